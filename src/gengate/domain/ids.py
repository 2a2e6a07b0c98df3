"""Public identifiers: a prefix followed by the 32 hex digits of a UUIDv7.

Prefixes: `job`, `acct`, `key`, `out` (outputs and assets), `whd` (webhook deliveries),
`msg` (webhook messages), `led` (ledger entries), `upl` (uploads).

UUIDv7 values are time-ordered, so sorting by id sorts by creation time; keyset
pagination and the `created_after`/`created_before` filters rely on that.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import uuid_utils

from gengate.domain.errors import NotFound

_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def new_uuid() -> uuid.UUID:
    """A fresh UUIDv7 (monotonic within this process)."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def format_id(prefix: str, value: uuid.UUID) -> str:
    return f"{prefix}_{value.hex}"


def parse_id(prefix: str, text: str) -> uuid.UUID | None:
    """The UUID behind `prefix_<hex>` or a bare UUID; None when malformed."""
    raw = text.removeprefix(f"{prefix}_")
    if not _UUID_TEXT.fullmatch(raw):
        return None
    return uuid.UUID(raw)


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 that could have been minted at `moment` (ms precision)."""
    millis = int(moment.timestamp() * 1000)
    millis = max(0, min(millis, (1 << 48) - 1))
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | (0b10 << 62))


def uuid7_time_ms(value: uuid.UUID) -> int:
    return value.int >> 80


def require_id(prefix: str, text: str, noun: str) -> uuid.UUID:
    """The UUID behind `prefix_<hex>` or a bare UUID. A malformed id names nothing, so it
    is simply not found (404), like an unknown one."""
    parsed = parse_id(prefix, text)
    if parsed is None:
        raise NotFound(f"No {noun} {text[:80]!r}.")
    return parsed
