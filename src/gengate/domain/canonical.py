"""Canonical JSON: the form in which two equal request bodies hash the same."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def request_fingerprint(route: str, body: Any) -> str:
    """SHA-256 over the route and the canonical body, for Idempotency-Key checks."""
    digest = hashlib.sha256()
    digest.update(route.encode())
    digest.update(b"\n")
    digest.update(canonical_json(body))
    return digest.hexdigest()
