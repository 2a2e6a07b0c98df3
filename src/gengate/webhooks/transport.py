"""One webhook POST to an address that was vetted for exactly this attempt.

The delivery resolves the URL's host once (through the gateway's resolver), vets every
address with the address guard, and then connects only to those addresses: the network
backend below ignores the host name httpcore asks for and dials the vetted IPs, so a
name that resolves to something else a moment later (DNS rebinding) cannot redirect
the connection. The request still carries the original `Host` header, and TLS still
sends the host name as SNI and verifies the certificate against it.

Each attempt uses a fresh connection that is closed afterwards; redirects are never
followed (httpcore does not follow them); the whole attempt, from connecting to the last
byte read (at most RESPONSE_BODY_LIMIT of the body), is bounded by one deadline, so a
receiver that trickles bytes cannot hold it longer.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import httpcore

from gengate.outbound.address_guard import CheckedTarget

#: How much of a receiver's answer is kept in the delivery log.
RESPONSE_BODY_LIMIT = 1024
#: Characters a request target keeps as they are (RFC 3986 reserved and unreserved).
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%-._~"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What came back from one attempt. `status_code` is None when no answer arrived,
    and then `error` says why (`timeout: …`, `connection: …`)."""

    status_code: int | None
    latency_ms: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    error: str | None = None


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Dials the vetted addresses, in order, whatever host name it is asked for."""

    def __init__(self, addresses: Iterable[str], port: int) -> None:
        self._addresses = tuple(addresses)
        self._port = port
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        last_error: Exception | None = None
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    self._port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        if last_error is None:
            raise httpcore.ConnectError("no vetted address to connect to")
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are never sent over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _ascii_host(host: str) -> str:
    if ":" in host:  # an IPv6 literal
        return host
    return host.encode("idna").decode("ascii")


def request_url(target: CheckedTarget) -> tuple[httpcore.URL, str]:
    """The request URL from the checked parts (so nothing re-parses the raw URL
    differently) and the `Host` header value."""
    parts = urlsplit(target.url)
    host = _ascii_host(target.host)
    default_port = 443 if target.scheme == "https" else 80
    host_header = f"[{host}]" if ":" in host else host
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    url = httpcore.URL(scheme=target.scheme, host=host, port=target.port, target=path)
    return url, host_header


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
