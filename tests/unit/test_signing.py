"""Signed file links: untampered and unexpired links verify; anything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from gengate.storage.signing import LinkSigner, expires_at_iso, expiry_for, new_secret_key

NOW = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
KEY = "jobs/0189/out_1.png"


def split_link(path: str) -> tuple[str, str, str]:
    """(key, expires, sig) of a `/v1/files/{key}?expires=…&sig=…` path."""
    parts = urlsplit(path)
    assert parts.path.startswith("/v1/files/")
    query = parse_qsl(parts.query)
    assert [name for name, _ in query] == ["expires", "sig"]  # sig is the last parameter
    return unquote(parts.path.removeprefix("/v1/files/")), query[0][1], query[1][1]


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner("a-deployment-secret")


@pytest.fixture
def link(signer: LinkSigner) -> tuple[str, str, str]:
    return split_link(signer.path(KEY, expiry_for(NOW, 86_400)))


def test_a_signed_path_verifies(signer: LinkSigner, link: tuple[str, str, str]) -> None:
    key, expires, sig = link
    assert key == KEY
    assert signer.verify(key, expires, sig, NOW)
    assert signer.verify(key, expires, sig, NOW + timedelta(hours=24))


def test_a_key_with_odd_characters_round_trips(signer: LinkSigner) -> None:
    key = "a b/ü?&=#.png"
    path = signer.path(key, expiry_for(NOW, 3600))
    assert " " not in path and "#" not in path
    parsed_key, expires, sig = split_link(path)
    assert parsed_key == key
    assert signer.verify(parsed_key, expires, sig, NOW)


def test_a_tampered_key_fails(signer: LinkSigner, link: tuple[str, str, str]) -> None:
    _, expires, sig = link
    assert not signer.verify("jobs/0189/out_2.png", expires, sig, NOW)


def test_a_tampered_expiry_fails(signer: LinkSigner, link: tuple[str, str, str]) -> None:
    key, expires, sig = link
    assert not signer.verify(key, str(int(expires) + 3600), sig, NOW)
    assert not signer.verify(key, str(int(expires) - 3600), sig, NOW)


def test_a_tampered_signature_fails(signer: LinkSigner, link: tuple[str, str, str]) -> None:
    key, expires, sig = link
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert not signer.verify(key, expires, flipped, NOW)
    assert not signer.verify(key, expires, sig[:-1], NOW)
    assert not signer.verify(key, expires, sig + "A", NOW)


def test_another_deployments_secret_fails(link: tuple[str, str, str]) -> None:
    key, expires, sig = link
    assert not LinkSigner("another-secret").verify(key, expires, sig, NOW)


@pytest.mark.parametrize(
    "sig",
    [None, "", "x", pytest.param("é" * 43, id="non-ascii"), "not a signature at all"],
)
def test_missing_or_garbage_signatures_fail(
    signer: LinkSigner, link: tuple[str, str, str], sig: str | None
) -> None:
    key, expires, _ = link
    assert not signer.verify(key, expires, sig, NOW)


@pytest.mark.parametrize(
    "expires",
    [
        None,
        "",
        "soon",
        "-1",
        "+1741968000",
        "1741968000.0",
        " 1741968000",
        "1e12",
        pytest.param("²", id="superscript-two"),  # a digit to str.isdigit, not to int()
        "9" * 13,
        "9" * 400,
    ],
)
def test_missing_garbage_or_huge_expiries_fail(
    signer: LinkSigner, link: tuple[str, str, str], expires: str | None
) -> None:
    key, _, sig = link
    assert not signer.verify(key, expires, sig, NOW)


def test_an_expired_link_fails(signer: LinkSigner) -> None:
    expires = int((NOW - timedelta(seconds=1)).timestamp())
    key, text, sig = split_link(signer.path(KEY, expires))
    assert not signer.verify(key, text, sig, NOW)
    assert signer.verify(key, text, sig, NOW - timedelta(seconds=2))


def test_a_link_fails_after_its_expiry(signer: LinkSigner, link: tuple[str, str, str]) -> None:
    key, expires, sig = link
    after = datetime.fromtimestamp(int(expires), UTC) + timedelta(seconds=1)
    assert not signer.verify(key, expires, sig, after)


def test_expiry_rounds_up_to_the_hour() -> None:
    expires = expiry_for(NOW, 86_400)
    assert expires % 3600 == 0
    raw = NOW.timestamp() + 86_400
    assert raw <= expires < raw + 3600
    assert expires_at_iso(expires) == "2025-03-15T16:00:00Z"


def test_expiry_is_stable_within_the_hour() -> None:
    later = NOW + timedelta(minutes=30)  # 15:39:26, same hour
    assert expiry_for(NOW, 86_400) == expiry_for(later, 86_400)
    assert expiry_for(NOW, 86_400) < expiry_for(NOW + timedelta(hours=1), 86_400)


def test_expiry_on_the_hour_stays() -> None:
    on_the_hour = datetime(2025, 3, 14, 15, 0, 0, tzinfo=UTC)
    assert expiry_for(on_the_hour, 3600) == int(on_the_hour.timestamp()) + 3600


def test_new_secret_keys_are_long_and_distinct() -> None:
    keys = {new_secret_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k) >= 43 for k in keys)  # 32 random bytes, URL-safe base64
