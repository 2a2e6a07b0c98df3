"""Opaque, URL-safe keyset cursors: the last id of the page, base64url-encoded."""

from __future__ import annotations

import base64
import uuid

from gengate.domain.errors import InvalidRequest


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 16:
            raise ValueError
        return uuid.UUID(bytes=raw)
    except ValueError:
        raise InvalidRequest("The cursor is malformed.", details={"cursor": cursor[:100]}) from None
