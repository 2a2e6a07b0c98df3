"""The retry policy of webhook deliveries (SPEC §2). Pure: no I/O.

An attempt ends in one of three ways:

- **delivered**: the receiver answered 2xx;
- **gone**: the receiver answered 410, which means "stop sending": the message fails
  at once, whatever retries were left;
- **retry**: anything else (a timeout, a connection error, a refused address, a 3xx,
  which is never followed, or any other status). The next attempt waits for the next
  step of the schedule, with jitter, or longer when the receiver's `Retry-After` asks
  for it. When the schedule is spent, the message fails.

The schedule lists the delay before each attempt (`webhooks_retry_schedule_s`); the
default is the Standard Webhooks guidance (at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
14 h, 20 h, 24 h), ten attempts over about three days.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

#: A `Retry-After` is honoured up to this long; a receiver cannot park a message forever.
MAX_RETRY_AFTER_S = 24 * 3600.0
GONE = 410


class MessageStatus(StrEnum):
    """The state of a webhook message (and of the job record's `webhook.status`)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    #: The job's `webhook_events` did not list this event type: nothing is sent.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one HTTP attempt produced, as far as the policy cares."""

    status_code: int | None
    #: `Retry-After` of the answer, already parsed to seconds (None when absent).
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    status: MessageStatus
    #: Seconds until the next attempt (only when the status stays pending).
    delay_s: float | None
    #: The schedule step the next attempt is on.
    next_step: int


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def decide(
    outcome: AttemptOutcome,
    *,
    step: int,
    schedule: Sequence[float],
    jitter: float,
    rng: random.Random,
) -> Decision:
    """What happens after the attempt made on schedule step `step` (0-based)."""
    if is_success(outcome.status_code):
        return Decision(MessageStatus.DELIVERED, None, step + 1)
    if outcome.status_code == GONE:
        return Decision(MessageStatus.FAILED, None, step + 1)
    next_step = step + 1
    if next_step >= len(schedule):
        return Decision(MessageStatus.FAILED, None, next_step)
    delay = jittered(schedule[next_step], jitter, rng)
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
    return Decision(MessageStatus.PENDING, delay, next_step)


def jittered(delay_s: float, jitter: float, rng: random.Random) -> float:
    """`delay_s` moved by up to ±`jitter` of itself, so that many messages that failed
    together (a receiver's outage) do not all come back at the same instant."""
    if delay_s <= 0 or jitter <= 0:
        return max(0.0, delay_s)
    return delay_s * (1 + jitter * (2 * rng.random() - 1))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when
    absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def retry_after_of(headers: Mapping[str, str], *, now: datetime) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            return parse_retry_after(value, now=now)
    return None
