"""HMAC-signed, expiring file links: `/v1/files/{key}?expires=<unix>&sig=<hmac>`.

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
from datetime import UTC, datetime
from urllib.parse import quote

EXPIRY_BUCKET_S = 3600


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


def expiry_for(now: datetime, lifetime_s: int) -> int:
    """The link expiry (unix seconds): now + lifetime, rounded up to the hour."""
    raw = now.timestamp() + lifetime_s
    return math.ceil(raw / EXPIRY_BUCKET_S) * EXPIRY_BUCKET_S


class LinkSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, key: str, expires: str | None, sig: str | None, now: datetime) -> bool:
        """True only for an untampered link that has not expired."""
        if not expires or not sig or len(expires) > 12:
            return False
        if not (expires.isascii() and expires.isdigit() and sig.isascii()):
            return False
        if int(expires) < now.timestamp():
            return False
        return hmac.compare_digest(self.signature(key, int(expires)), sig)

    def path(self, key: str, expires: int) -> str:
        return f"/v1/files/{quote(key)}?expires={expires}&sig={self.signature(key, expires)}"


def expires_at_iso(expires: int) -> str:
    return datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
