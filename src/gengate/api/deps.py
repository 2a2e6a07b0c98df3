"""Typed dependencies of the routes: the gateway and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gengate.api.ratelimit import RateLimiter
from gengate.domain.errors import RateLimited
from gengate.domain.ids import format_id
from gengate.services import accounts
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_gateway(request: Request) -> Gateway:
    # async on purpose: FastAPI runs plain `def` dependencies in a thread pool.
    return gateway_of(request)


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key")


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: the gateway and who is calling."""

    gw: Gateway
    principal: Principal


async def get_caller(request: Request) -> Caller:
    """The caller's account, from `Authorization: Bearer` or `X-API-Key`; rate-limited.

    One dependency rather than two: FastAPI's dependency resolution is a large part
    of the cost of a small request."""
    gw = gateway_of(request)
    principal = await accounts.authenticate(gw.db, _presented_key(request))
    request.state.account_id = format_id("acct", principal.account_id)
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        decision = limiter.take(principal.key_id)
        request.state.rate_limit = decision
        if not decision.allowed:
            raise RateLimited(
                f"Rate limit of {limiter.policy.limit} requests per "
                f"{limiter.policy.period_s} s exceeded for this key.",
                retry_after=decision.retry_after_s,
            )
    return Caller(gw, principal)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CallerDep = Annotated[Caller, Depends(get_caller)]
