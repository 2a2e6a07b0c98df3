"""Per-key token buckets and the IETF RateLimit headers."""

from __future__ import annotations

import re
import types
import uuid

import pytest

from gengate.api import ratelimit
from gengate.api.ratelimit import Decision, RateLimiter
from gengate.config import RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def headers_of(decision: Decision) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in decision.headers()}


def test_a_bucket_of_n_allows_n_then_refuses(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=5, period_s=60))
    key = uuid.uuid4()
    decisions = [limiter.take(key) for _ in range(5)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    assert all(d.retry_after_s == 0 for d in decisions)
    refused = limiter.take(key)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after_s >= 1
    assert refused.retry_after_s == 12  # one token every 60 / 5 seconds


def test_retry_after_is_honest(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=2, period_s=10))
    key = uuid.uuid4()
    limiter.take(key)
    limiter.take(key)
    refused = limiter.take(key)
    assert not refused.allowed
    clock.advance(refused.retry_after_s - 0.5)
    assert not limiter.take(key).allowed
    clock.advance(0.5)
    assert limiter.take(key).allowed


def test_the_bucket_refills_over_time_up_to_its_capacity(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=3, period_s=60))
    key = uuid.uuid4()
    for _ in range(3):
        assert limiter.take(key).allowed
    assert not limiter.take(key).allowed
    clock.advance(20)  # one token
    assert limiter.take(key).allowed
    assert not limiter.take(key).allowed
    clock.advance(3600)  # far more than a period: the bucket holds one period's worth
    assert [limiter.take(key).allowed for _ in range(4)] == [True, True, True, False]


def test_separate_keys_have_separate_buckets(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=1, period_s=60))
    first, second = uuid.uuid4(), uuid.uuid4()
    assert limiter.take(first).allowed
    assert not limiter.take(first).allowed
    assert limiter.take(second).allowed
    assert not limiter.take(second).allowed


def test_headers_follow_the_ietf_form(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=3, period_s=60))
    key = uuid.uuid4()
    headers = headers_of(limiter.take(key))
    assert set(headers) == {"ratelimit-policy", "ratelimit"}
    assert headers["ratelimit-policy"] == '"default";q=3;w=60'
    assert headers["ratelimit"] == '"default";r=2;t=20'
    shape = re.compile(r'^"default";r=\d+;t=\d+$')
    for _ in range(3):
        state = headers_of(limiter.take(key))["ratelimit"]
        assert shape.match(state)
    assert headers_of(limiter.take(key))["ratelimit"] == '"default";r=0;t=60'


def test_reset_counts_down_as_the_bucket_refills(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(limit=60, period_s=60))
    key = uuid.uuid4()
    for _ in range(60):
        limiter.take(key)
    clock.advance(30)
    decision = limiter.take(key)
    assert decision.allowed
    assert decision.remaining == 29
    assert decision.reset_s == 31
