"""Canonical JSON: the form in which two equal request bodies hash the same."""

from __future__ import annotations

import hashlib
import math
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


# Integers that fit the database and orjson: signed 64-bit, plus unsigned 64-bit.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# orjson stops at 255 levels; the job record and webhook payload wrap a body in more.
MAX_DEPTH = 64


def check_json_value(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise ValueError unless `value` can be stored and sent back unchanged: no integer
    beyond 64 bits, no NaN or infinity, no text without a UTF-8 form (a lone surrogate),
    no nesting deeper than MAX_DEPTH. Python's JSON parser accepts all four; the encoder
    of rows, answers and fingerprints refuses or alters them."""
    where = path or "(root)"
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"{where}: integer outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: numbers must be finite")
    elif isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{path}/{index}", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(str(key), where)
            check_json_value(item, f"{path}/{key}", depth + 1)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{where}: text that is not valid Unicode") from None
    if "\x00" in text:
        # PostgreSQL's jsonb cannot hold U+0000.
        raise ValueError(f"{where}: text with a NUL character")
