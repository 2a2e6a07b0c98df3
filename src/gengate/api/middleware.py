"""The outermost layer of every HTTP request (plain ASGI, no per-request objects):
request ids, the body size limit, rate-limit headers, latency metrics, the access
log, and the last line of defence for unexpected exceptions."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gengate.api.errors import error_body
from gengate.api.responses import json_response
from gengate.metrics import Metrics

access_logger = logging.getLogger("gengate.access")
error_logger = logging.getLogger("gengate.errors")


class BodyTooLarge(Exception):
    pass


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_body_bytes: int,
        access_log: bool,
        body_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        # Paths that take bigger bodies than the default (uploads).
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        sent: dict[str, int] = {}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                decision = state.get("rate_limit")
                if decision is not None:
                    headers.extend(decision.headers())
                message["headers"] = headers
            await send(message)

        received = 0
        limit = self.body_limits.get(scope["path"], self.max_body_bytes)

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge()
            return message

        try:
            if _declared_length(scope) > limit:
                raise BodyTooLarge()
            await self.app(scope, receive_limited, send_with_headers)
        except BodyTooLarge:
            if not sent:
                message = f"The request body is larger than {limit} bytes."
                body = error_body("invalid_request", message, {"max_body_bytes": limit}, request_id)
                await json_response(body, 400)(scope, receive, send_with_headers)
        except Exception:
            error_logger.exception(
                "unhandled error", extra={"request_id": request_id, "path": scope.get("path")}
            )
            if not sent:
                message = "An unexpected error occurred; quote the request id when reporting it."
                body = error_body("internal_error", message, {}, request_id)
                await json_response(body, 500)(scope, receive, send_with_headers)
        finally:
            self._record(scope, state, sent.get("status", 500), time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, elapsed: float) -> None:
        template = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.http_latency.labels(scope["method"], template, str(status)).observe(elapsed)
        if self.access_log:
            access_logger.info(
                "request",
                extra={
                    "event": "http.request",
                    "request_id": state["request_id"],
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "account_id": state.get("account_id"),
                },
            )
