"""Connections pinned to vetted addresses, for every outbound call (webhooks, input media).

A caller resolves a URL's host once and vets every address with the address guard;
`PinnedBackend` then dials only those addresses, whatever host name httpcore asks
for, so a name that resolves to something else a moment later (DNS rebinding) cannot
redirect the connection. `request_url` builds the request from the checked parts, so
the request still carries the original `Host` header, and TLS still sends the host
name as SNI and verifies the certificate against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, urlsplit

import httpcore

from gengate.outbound.address_guard import CheckedTarget

#: Characters a request target keeps as they are (RFC 3986 reserved and unreserved).
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%-._~"


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
        raise httpcore.ConnectError("outbound calls never go over unix sockets")

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
