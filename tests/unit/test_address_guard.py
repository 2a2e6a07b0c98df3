"""The address guard refuses URLs that reach anything but public unicast addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

import pytest

from gengate.domain.errors import InvalidInput
from gengate.outbound.address_guard import (
    MAX_URL_LENGTH,
    CheckedTarget,
    Resolver,
    check_url,
    is_public_address,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700::1111"

DNS: dict[str, list[str]] = {
    "example.com": [PUBLIC_V4, PUBLIC_V6],
    "hooks.example.net": [PUBLIC_V4],
    "localhost.attacker.test": ["127.0.0.1"],
    "split.attacker.test": [PUBLIC_V4, "10.0.0.7"],
    "v6-loopback.attacker.test": ["::1"],
    "metadata.attacker.test": ["169.254.169.254"],
    "empty.test": [],
    "intranet.corp": ["192.168.10.20"],
}


class DictResolver:
    """An async resolver answering from a dict; unknown names fail like the real one."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


@pytest.fixture
def resolver() -> DictResolver:
    return DictResolver(DNS)


async def check(url: str, resolver: Resolver, *, allow_private: bool = False) -> CheckedTarget:
    return await check_url(url, field="webhook_url", allow_private=allow_private, resolver=resolver)


async def assert_refused(url: str, resolver: Resolver) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        await check(url, resolver)
    error = caught.value
    assert error.http_status == 422
    assert error.code == "invalid_input"
    assert error.details["field"] == "webhook_url"
    assert "webhook_url" in error.message
    return error


REFUSED_LITERALS = [
    "127.0.0.1",
    "127.8.9.10",
    "[::1]",
    "10.0.0.1",
    "172.16.5.4",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",  # shared address space (CGNAT)
    "0.0.0.0",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "192.0.2.1",
    "[fc00::1]",
    "[fd00:ec2::254]",
    "[fe80::1]",
    "[fe80::1%25eth0]",
    "[ff02::1]",
    "[ff0e::1]",
    "[2002:7f00:1::]",  # 6to4 of 127.0.0.1
    "[2002:a00:1::]",  # 6to4 of 10.0.0.1
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[2001:0:4136:e378::80ff:fffe]",  # Teredo, client 127.0.0.1
    "[2001:db8::1]",  # documentation
    "[::127.0.0.1]",  # deprecated IPv4-compatible form
]


@pytest.mark.parametrize("host", REFUSED_LITERALS)
async def test_non_public_literals_are_refused(host: str, resolver: DictResolver) -> None:
    await assert_refused(f"https://{host}/hook", resolver)
    await assert_refused(f"http://{host}:8080/hook", resolver)
    assert resolver.calls == []  # a literal is never looked up


@pytest.mark.parametrize("host", [PUBLIC_V4, f"[{PUBLIC_V6}]"])
async def test_public_literals_pass(host: str, resolver: DictResolver) -> None:
    target = await check(f"https://{host}/hook", resolver)
    assert target.addresses == (host.strip("[]"),)
    assert target.port == 443
    assert target.scheme == "https"
    assert resolver.calls == []


@pytest.mark.parametrize(
    "host",
    [
        "[2002:5db8:d822::]",  # 6to4 of a public address
        "[64:ff9b::5db8:d822]",  # NAT64 of a public address
        "[::ffff:93.184.216.34]",  # IPv4-mapped public address
    ],
)
async def test_embedded_public_addresses_pass(host: str, resolver: DictResolver) -> None:
    await check(f"https://{host}/hook", resolver)


async def test_a_public_hostname_passes_with_its_addresses(resolver: DictResolver) -> None:
    target = await check("https://example.com/hooks/gengate?x=1", resolver)
    assert target == CheckedTarget(
        url="https://example.com/hooks/gengate?x=1",
        scheme="https",
        host="example.com",
        port=443,
        addresses=(PUBLIC_V4, PUBLIC_V6),
    )
    assert resolver.calls == [("example.com", 443)]


async def test_ports_default_by_scheme_and_explicit_ports_are_kept(
    resolver: DictResolver,
) -> None:
    assert (await check("http://example.com/", resolver)).port == 80
    assert (await check("HTTPS://example.com:8443/", resolver)).port == 8443
    assert resolver.calls == [("example.com", 80), ("example.com", 8443)]


@pytest.mark.parametrize(
    "host",
    [
        "localhost.attacker.test",
        "v6-loopback.attacker.test",
        "metadata.attacker.test",
        "intranet.corp",
        "split.attacker.test",  # one public and one private address
    ],
)
async def test_hostnames_resolving_to_non_public_addresses_are_refused(
    host: str, resolver: DictResolver
) -> None:
    await assert_refused(f"https://{host}/hook", resolver)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "example.com/hook",  # no scheme
        "https:///hook",  # no host
        "https://",
        "http://:80/hook",
        "https://example.com:99999/",  # port out of range
        "https://example.com:port/",
        "http://[::1/",  # unbalanced bracket
    ],
)
async def test_bad_schemes_and_malformed_urls_are_refused(url: str, resolver: DictResolver) -> None:
    await assert_refused(url, resolver)


@pytest.mark.parametrize("host", ["no-such-host.invalid", "empty.test"])
async def test_unresolvable_hosts_are_refused(host: str, resolver: DictResolver) -> None:
    error = await assert_refused(f"https://{host}/hook", resolver)
    assert "resolved" in error.message


async def test_an_over_long_url_is_refused(resolver: DictResolver) -> None:
    url = "https://example.com/" + "a" * MAX_URL_LENGTH
    error = await assert_refused(url, resolver)
    assert len(error.details["url"]) <= 200  # the echo of the URL is bounded
    assert resolver.calls == []


async def test_a_url_at_the_length_limit_passes(resolver: DictResolver) -> None:
    prefix = "https://example.com/"
    await check(prefix + "a" * (MAX_URL_LENGTH - len(prefix)), resolver)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/",
        "http://intranet.corp/hook",
        "http://localhost.attacker.test/",
    ],
)
async def test_allow_private_accepts_private_targets(url: str, resolver: DictResolver) -> None:
    target = await check(url, resolver, allow_private=True)
    assert target.addresses


async def test_allow_private_still_refuses_bad_schemes_and_unknown_hosts(
    resolver: DictResolver,
) -> None:
    for url in ("file:///etc/passwd", "https://no-such-host.invalid/"):
        with pytest.raises(InvalidInput):
            await check(url, resolver, allow_private=True)


async def test_the_field_name_is_reported() -> None:
    with pytest.raises(InvalidInput) as caught:
        await check_url(
            "http://127.0.0.1/a.png",
            field="image_url",
            allow_private=False,
            resolver=DictResolver({}),
        )
    assert caught.value.details["field"] == "image_url"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        (PUBLIC_V4, True),
        (PUBLIC_V6, True),
        ("2a00:1450:4001:81b::200e", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("2002:7f00:1::", False),
        ("64:ff9b::a00:1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public
