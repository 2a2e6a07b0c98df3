"""Canonical JSON: equal bodies hash the same whatever their key order or spacing."""

from __future__ import annotations

import json

from gengate.domain.canonical import canonical_json, request_fingerprint

ROUTE = "POST /v1/models/echo/run"


def test_canonical_json_sorts_keys_without_whitespace() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}}) == (
        b'{"a":{"c":null,"d":[1,2]},"b":1}'
    )


def test_key_order_and_whitespace_do_not_change_the_fingerprint() -> None:
    first = json.loads('{"input": {"prompt": "a cat", "seed": 3}, "sync": false}')
    second = json.loads('{ "sync" : false ,\n  "input" : { "seed" : 3 , "prompt" : "a cat" } }')
    assert request_fingerprint(ROUTE, first) == request_fingerprint(ROUTE, second)


def test_different_values_change_the_fingerprint() -> None:
    base = {"input": {"prompt": "a cat", "seed": 3}}
    assert request_fingerprint(ROUTE, base) != request_fingerprint(
        ROUTE, {"input": {"prompt": "a cat", "seed": 4}}
    )
    assert request_fingerprint(ROUTE, base) != request_fingerprint(
        ROUTE, {"input": {"prompt": "a dog", "seed": 3}}
    )
    assert request_fingerprint(ROUTE, base) != request_fingerprint(
        ROUTE, {"input": {"prompt": "a cat", "seed": 3}, "sync": False}
    )


def test_list_order_matters() -> None:
    assert request_fingerprint(ROUTE, {"tags": [1, 2]}) != request_fingerprint(
        ROUTE, {"tags": [2, 1]}
    )


def test_different_routes_change_the_fingerprint() -> None:
    body = {"prompt": "a cat"}
    assert request_fingerprint("POST /v1/images/generations", body) != request_fingerprint(
        "POST /v1/videos/generations", body
    )


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    digest = request_fingerprint(ROUTE, {})
    assert len(digest) == 64
    assert int(digest, 16) >= 0
