"""The address guard: refuse URLs whose host is not globally routable (SSRF).

A URL passes only when it is http(s) and every address its host resolves to is a
public unicast address. IPv4 addresses embedded in IPv6 forms (mapped, 6to4,
Teredo, NAT64) are judged by the IPv4 address they carry. The caller gets the
checked addresses back, so a later connection can go to exactly those.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from gengate.domain.errors import InvalidInput

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return sorted({str(info[4][0]) for info in infos})


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    return (
        address.is_global
        and not address.is_multicast
        and not address.is_reserved
        and not address.is_unspecified
    )


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _refuse(field: str, url: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"{field} is not allowed: {reason}.", details={"field": field, "url": url[:200]}
    )


async def check_url(
    url: str, *, field: str, allow_private: bool, resolver: Resolver
) -> CheckedTarget:
    """Parse, resolve and vet `url`; InvalidInput (422) when it may not be called."""
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(field, url, f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(field, url, f"malformed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse(field, url, "only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise _refuse(field, url, "the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(host, port)
        except (OSError, UnicodeError):
            raise _refuse(field, url, f"the host {host!r} cannot be resolved") from None
        if not addresses:
            raise _refuse(field, url, f"the host {host!r} cannot be resolved")
    if not allow_private:
        for text in addresses:
            if not is_public_address(ipaddress.ip_address(text.split("%", 1)[0])):
                raise _refuse(field, url, f"{host} resolves to {text}, which is not public")
    return CheckedTarget(url, scheme, host, port, tuple(addresses))
