"""Query parameters shared by several routes."""

from __future__ import annotations

from gengate.domain.errors import InvalidRequest


def parse_tag_filters(values: list[str] | None) -> tuple[tuple[str, str], ...]:
    """`tag=key:value` (repeatable) as (key, value) pairs; every pair must match."""
    pairs = []
    for value in values or []:
        key, sep, tag_value = value.partition(":")
        if not sep or not key:
            raise InvalidRequest("A tag filter looks like tag=key:value.", details={"tag": value})
        pairs.append((key, tag_value))
    return tuple(pairs)
