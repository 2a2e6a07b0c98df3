"""One webhook POST to an address that was vetted for exactly this attempt.

The delivery resolves the URL's host once (through the gateway's resolver), vets every
address with the address guard, and then connects only to those addresses: the network
backend (`outbound/pinned.py`, shared with input media fetches) ignores the host name
httpcore asks for and dials the vetted IPs, so a name that resolves to something else a
moment later (DNS rebinding) cannot redirect the connection. The request still carries
the original `Host` header, and TLS still sends the host name as SNI and verifies the
certificate against it.

Each attempt uses a fresh connection that is closed afterwards; redirects are never
followed (httpcore does not follow them); the whole attempt, from connecting to the last
byte read (at most RESPONSE_BODY_LIMIT of the body), is bounded by one deadline, so a
receiver that trickles bytes cannot hold it longer.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpcore

from gengate.outbound.address_guard import CheckedTarget
from gengate.outbound.pinned import PinnedBackend, request_url

#: How much of a receiver's answer is kept in the delivery log.
RESPONSE_BODY_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class SendResult:
    """What came back from one attempt. `status_code` is None when no answer arrived,
    and then `error` says why (`timeout: …`, `connection: …`)."""

    status_code: int | None
    latency_ms: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    error: str | None = None


async def post(
    target: CheckedTarget,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    ssl_context: ssl.SSLContext,
) -> SendResult:
    """POST `body` to the vetted `target`; never raises for network trouble."""
    url, host_header = request_url(target)
    all_headers = [("Host", host_header), *headers.items()]
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    connection = httpcore.AsyncHTTPConnection(
        origin=url.origin,
        ssl_context=ssl_context,
        network_backend=PinnedBackend(target.addresses, target.port),
    )
    limits = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    status: int | None = None
    latency = 0
    answer_headers: dict[str, str] = {}
    kept = bytearray()
    error: str | None = None
    try:
        async with (
            asyncio.timeout(timeout_s),
            connection.stream(
                "POST", url, headers=all_headers, content=body, extensions={"timeout": limits}
            ) as response,
        ):
            status = response.status
            answer_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.headers}
            latency = elapsed_ms()
            # Only the start of the answer is kept; the rest is never read.
            async for chunk in response.aiter_stream():
                kept += chunk
                if len(kept) >= RESPONSE_BODY_LIMIT:
                    break
    except (TimeoutError, httpcore.TimeoutException):
        error = f"timeout: no answer within {timeout_s:g} s"
    except (httpcore.NetworkError, httpcore.ProtocolError, OSError, ssl.SSLError) as exc:
        error = f"connection: {_describe(exc)}"
    finally:
        await connection.aclose()
    if status is None:
        return SendResult(None, elapsed_ms(), error=error)
    # The status line decides; a body cut short by the deadline or the peer does not.
    return SendResult(
        status_code=status,
        latency_ms=latency,
        headers=answer_headers,
        body=bytes(kept[:RESPONSE_BODY_LIMIT]).decode("utf-8", errors="replace"),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]
