"""File links: HMAC-signed, expiring `/v1/files/{key}?expires=<unix>&sig=<hmac>` links
for files gengate serves itself, or the storage backend's own presigned URLs when it
serves them (S3).

The signature covers the key and the expiry; `sig` is the last query parameter.
Expiries are rounded up to the hour, so a job read twice within an hour shows the
same links (and keeps the same ETag).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import parse_qs, quote, unquote, urlsplit

EXPIRY_BUCKET_S = 3600
FILES_PATH = "/v1/files/"


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


def expiry_for(now: datetime, lifetime_s: int) -> int:
    """The link expiry (unix seconds): now + lifetime, rounded up to the hour."""
    raw = now.timestamp() + lifetime_s
    return math.ceil(raw / EXPIRY_BUCKET_S) * EXPIRY_BUCKET_S


class Presigner(Protocol):
    """A storage backend that serves files itself, behind URLs it signs (S3)."""

    def presigned_url(self, key: str, expires: int) -> str | None: ...

    def presigned_key(self, url: str) -> tuple[str, int] | None: ...


@dataclass(frozen=True, slots=True)
class OwnLink:
    """A link this deployment made: the file's storage key, and whether it expired."""

    key: str
    expired: bool


class LinkSigner:
    def __init__(self, secret: str, *, presigner: Presigner | None = None) -> None:
        self._key = secret.encode()
        self._presigner = presigner

    def signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, key: str, expires: str | None, sig: str | None, now: datetime) -> bool:
        """True only for an untampered link that has not expired."""
        if not self._is_signed(key, expires, sig):
            return False
        assert expires is not None
        return int(expires) >= now.timestamp()

    def _is_signed(self, key: str, expires: str | None, sig: str | None) -> bool:
        if not expires or not sig or len(expires) > 12:
            return False
        if not (expires.isascii() and expires.isdigit() and sig.isascii()):
            return False
        return hmac.compare_digest(self.signature(key, int(expires)), sig)

    def path(self, key: str, expires: int) -> str:
        return f"{FILES_PATH}{quote(key)}?expires={expires}&sig={self.signature(key, expires)}"

    def url(self, base_url: str, key: str, expires: int) -> str:
        """The absolute link to a file until `expires`: the storage backend's presigned
        URL when it serves files itself, else our signed link under `base_url`."""
        if self._presigner is not None:
            presigned = self._presigner.presigned_url(key, expires)
            if presigned is not None:
                return presigned
        return base_url.rstrip("/") + self.path(key, expires)

    def identify(self, url: str, now: datetime) -> OwnLink | None:
        """The file behind `url` when it is a link this deployment signed (whatever host
        it names: the signature proves it), expired or not; None for any other URL."""
        split = urlsplit(url)
        _, marker, quoted_key = split.path.partition(FILES_PATH)
        if marker:
            key = unquote(quoted_key)
            query = parse_qs(split.query)
            expires = query.get("expires", [""])[0]
            if self._is_signed(key, expires, query.get("sig", [""])[0]):
                return OwnLink(key, int(expires) < now.timestamp())
        if self._presigner is not None:
            presigned = self._presigner.presigned_key(url)
            if presigned is not None:
                key, expires_at = presigned
                return OwnLink(key, expires_at < now.timestamp())
        return None


def expires_at_iso(expires: int) -> str:
    return datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
