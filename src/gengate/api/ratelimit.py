"""Per-key token buckets, with the IETF `RateLimit-Policy` / `RateLimit` headers.

Each key's bucket holds one period's worth of requests and refills continuously,
so short bursts pass. Buckets live in this process: with N API replicas each
replica enforces the limit on what it sees (see docs/configuration.md).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from gengate.config import RateLimit

POLICY_NAME = "default"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    remaining: int
    reset_s: int
    retry_after_s: int
    policy: RateLimit

    def headers(self) -> list[tuple[bytes, bytes]]:
        policy = f'"{POLICY_NAME}";q={self.policy.limit};w={self.policy.period_s}'
        state = f'"{POLICY_NAME}";r={self.remaining};t={self.reset_s}'
        return [(b"ratelimit-policy", policy.encode()), (b"ratelimit", state.encode())]


class RateLimiter:
    def __init__(self, policy: RateLimit) -> None:
        self.policy = policy
        self._capacity = float(policy.limit)
        self._rate = policy.per_second
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}

    def take(self, key: uuid.UUID) -> Decision:
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        reset_s = math.ceil((self._capacity - tokens) / self._rate)
        retry_after_s = 0 if allowed else max(1, math.ceil((1.0 - tokens) / self._rate))
        return Decision(allowed, int(tokens), reset_s, retry_after_s, self.policy)
