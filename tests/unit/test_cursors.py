"""Keyset cursors: opaque, URL-safe, and refused (400) when malformed."""

from __future__ import annotations

import re

import pytest

from gengate.domain.cursors import decode_cursor, encode_cursor
from gengate.domain.errors import InvalidRequest
from gengate.domain.ids import new_uuid


def test_round_trip_and_url_safe() -> None:
    for _ in range(200):
        value = new_uuid()
        cursor = encode_cursor(value)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
        assert decode_cursor(cursor) == value


@pytest.mark.parametrize("cursor", ["", "abc", "AAAA", "!!!!", "é" * 22, "A" * 30, "A" * 21 + "%"])
def test_malformed_cursors_are_invalid_requests(cursor: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_cursor(cursor)
    assert caught.value.http_status == 400
    assert caught.value.code == "invalid_request"
