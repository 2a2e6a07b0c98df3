"""Fetching input media: the file behind a media URL in a job's input (`image_url`,
`audio_url`), read under the same rules as every outbound call.

Order of business for one URL:

1. A file link this deployment made (an upload's or an output's) is read straight from
   storage by the `open_own` callable the caller hands in; the signature proves the link,
   whatever host it names, so no HTTP request is made (embedded deployments often answer
   on a loopback address the guard would refuse).
2. Any other URL is parsed, resolved and vetted by the address guard, and fetched with a
   GET over a connection pinned to the vetted addresses (`outbound/pinned.py`).
   Redirects are followed at most MAX_REDIRECTS times, each new location vetted again
   from step 1.

Limits: one deadline for the whole fetch, redirects included; at most `max_bytes` read
(a larger `Content-Length` is refused before reading); the media type is sniffed from
the bytes (the server's `Content-Type` is not trusted) and must be one the caller
accepts. Every refusal is a `MediaRefused` whose message is safe to show the client;
`transient` marks failures that may pass on another try (timeouts, connection errors,
5xx, 429).

This module knows nothing of jobs, storage or the database: the worker's context wires
it to them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin

import httpcore

from gengate.domain.errors import InvalidInput
from gengate.outbound.address_guard import CheckedTarget, Resolver, check_url
from gengate.outbound.pinned import PinnedBackend, request_url

IMAGE_TYPES: Final = frozenset({"image/png", "image/jpeg", "image/webp"})
AUDIO_TYPES: Final = frozenset({"audio/wav", "audio/mpeg"})
#: The input fields that carry media URLs, and the types each accepts.
MEDIA_URL_FIELDS: Final = {"image_url": IMAGE_TYPES, "audio_url": AUDIO_TYPES}
MAX_REDIRECTS: Final = 3
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
TRANSIENT_STATUSES: Final = frozenset({408, 425, 429})
USER_AGENT: Final = "gengate-media-fetch"

#: Reads a link of this deployment from storage: (bytes, media type), or None when the
#: URL is not one of ours.
OwnFileReader = Callable[[str], Awaitable[tuple[bytes, str] | None]]


class MediaRefused(Exception):
    """The media URL cannot be used; the message says why, for the client."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """The operator's limits on input media fetches."""

    allow_private: bool
    max_bytes: int
    timeout_s: float
    resolver: Resolver
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True, slots=True)
class FetchedMedia:
    data: bytes
    content_type: str  # as sniffed from the bytes


def sniff_media_type(data: bytes) -> str | None:
    """The media type the leading bytes show, for the types input media may have."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF":
        if data[8:12] == b"WEBP":
            return "image/webp"
        if data[8:12] == b"WAVE":
            return "audio/wav"
    # MP3: an ID3v2 tag, or an MPEG audio frame header (11 sync bits, layer III).
    if data.startswith(b"ID3"):
        return "audio/mpeg"
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x06 == 0x02:
        return "audio/mpeg"
    return None


#: Enough leading bytes for `sniff_media_type` to decide.
SNIFF_BYTES: Final = 16


def _accepted_type(data: bytes, field: str, accept: Collection[str]) -> str:
    content_type = sniff_media_type(data)
    if content_type is None or content_type not in accept:
        accepted = ", ".join(sorted(accept))
        raise MediaRefused(f"{field}: the file is not of an accepted type ({accepted}).")
    return content_type


def _checked(data: bytes, field: str, accept: Collection[str], max_bytes: int) -> FetchedMedia:
    if len(data) > max_bytes:
        raise MediaRefused(f"{field}: the file is larger than {max_bytes} bytes.")
    if not data:
        raise MediaRefused(f"{field}: the file is empty.")
    return FetchedMedia(data, _accepted_type(data, field, accept))


async def fetch_media(
    url: str,
    *,
    field: str,
    accept: Collection[str],
    policy: MediaPolicy,
    open_own: OwnFileReader,
) -> FetchedMedia:
    """The bytes behind `url`, of one of the `accept`ed media types, or MediaRefused."""
    try:
        async with asyncio.timeout(policy.timeout_s):
            return await _follow(url, field=field, accept=accept, policy=policy, open_own=open_own)
    except TimeoutError:
        raise MediaRefused(
            f"{field}: the file could not be fetched within {policy.timeout_s:g} s.",
            transient=True,
        ) from None


async def _follow(
    url: str,
    *,
    field: str,
    accept: Collection[str],
    policy: MediaPolicy,
    open_own: OwnFileReader,
) -> FetchedMedia:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        own = await open_own(current)
        if own is not None:
            return _checked(own[0], field, accept, policy.max_bytes)
        try:
            target = await check_url(
                current, field=field, allow_private=policy.allow_private, resolver=policy.resolver
            )
        except InvalidInput as refused:
            raise MediaRefused(refused.message) from None
        outcome = await _get(target, field=field, accept=accept, policy=policy)
        if isinstance(outcome, FetchedMedia):
            return outcome
        current = outcome
    raise MediaRefused(f"{field}: more than {MAX_REDIRECTS} redirects.")


async def _get(
    target: CheckedTarget, *, field: str, accept: Collection[str], policy: MediaPolicy
) -> FetchedMedia | str:
    """One GET to the vetted target: the media, or the URL a redirect points to."""
    url, host_header = request_url(target)
    headers = [
        ("Host", host_header),
        ("Accept", ", ".join(sorted(accept))),
        ("User-Agent", USER_AGENT),
    ]
    connection = httpcore.AsyncHTTPConnection(
        origin=url.origin,
        ssl_context=policy.ssl_context or httpcore.default_ssl_context(),
        network_backend=PinnedBackend(target.addresses, target.port),
    )
    try:
        async with connection.stream("GET", url, headers=headers) as response:
            answer = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
            if response.status in REDIRECT_STATUSES:
                location = answer.get("location")
                if not location:
                    raise MediaRefused(f"{field}: a redirect without a location.")
                return urljoin(target.url, location)
            _refuse_status(response.status, field)
            declared = answer.get("content-length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise MediaRefused(f"{field}: the file is larger than {policy.max_bytes} bytes.")
            body = bytearray()
            sniffed = False
            async for chunk in response.aiter_stream():
                body += chunk
                # Stop at the first byte past the limit; the rest is never read.
                if len(body) > policy.max_bytes:
                    break
                # Refuse as soon as the first bytes show a file of another type.
                if not sniffed and len(body) >= SNIFF_BYTES:
                    _accepted_type(bytes(body[:SNIFF_BYTES]), field, accept)
                    sniffed = True
            return _checked(bytes(body), field, accept, policy.max_bytes)
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise MediaRefused(
            f"{field}: the file could not be fetched ({type(exc).__name__}).", transient=True
        ) from None
    except OSError as exc:  # ssl.SSLError included
        raise MediaRefused(
            f"{field}: the file could not be fetched ({type(exc).__name__}).", transient=True
        ) from None
    finally:
        await connection.aclose()


def _refuse_status(status: int, field: str) -> None:
    if status == 200:
        return
    transient = status >= 500 or status in TRANSIENT_STATUSES
    raise MediaRefused(f"{field}: the server answered HTTP {status}.", transient=transient)
