"""The retry policy on its own (pure functions, no database): which answers count,
how the schedule, jitter and `Retry-After` set the next attempt, and the settings that
carry the schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from gengate.config import DEFAULT_WEBHOOK_SCHEDULE_S, load_settings
from gengate.webhooks.policy import (
    MAX_RETRY_AFTER_S,
    AttemptOutcome,
    Decision,
    MessageStatus,
    decide,
    jittered,
    parse_retry_after,
)

SCHEDULE = [0.0, 5.0, 300.0]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def decision(
    status_code: int | None, step: int = 0, retry_after_s: float | None = None
) -> Decision:
    return decide(
        AttemptOutcome(status_code, retry_after_s),
        step=step,
        schedule=SCHEDULE,
        jitter=0.0,
        rng=random.Random(1),
    )


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_any_2xx_delivers(code: int) -> None:
    assert decision(code).status is MessageStatus.DELIVERED


@pytest.mark.parametrize("code", [None, 100, 301, 302, 307, 308, 400, 404, 429, 500, 503])
def test_everything_else_retries_on_the_next_step(code: int | None) -> None:
    first = decision(code, step=0)
    assert (first.status, first.delay_s, first.next_step) == (MessageStatus.PENDING, 5.0, 1)
    second = decision(code, step=1)
    assert (second.status, second.delay_s, second.next_step) == (MessageStatus.PENDING, 300.0, 2)


def test_the_last_step_failing_fails_the_message() -> None:
    last = decision(500, step=len(SCHEDULE) - 1)
    assert last.status is MessageStatus.FAILED
    assert last.delay_s is None


def test_410_fails_at_once() -> None:
    assert decision(410, step=0).status is MessageStatus.FAILED


def test_retry_after_lengthens_but_never_shortens_the_wait() -> None:
    assert decision(503, step=0, retry_after_s=60).delay_s == 60
    assert decision(503, step=1, retry_after_s=1).delay_s == 300
    assert decision(503, step=0, retry_after_s=10 * MAX_RETRY_AFTER_S).delay_s == MAX_RETRY_AFTER_S


def test_jitter_spreads_delays_within_its_bounds() -> None:
    rng = random.Random(7)
    delays = [jittered(100.0, 0.1, rng) for _ in range(500)]
    assert min(delays) >= 90.0
    assert max(delays) <= 110.0
    assert max(delays) - min(delays) > 15.0
    assert jittered(0.0, 0.5, rng) == 0.0
    assert jittered(100.0, 0.0, rng) == 100.0


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", now=NOW) == 120.0
    assert parse_retry_after(" 7 ", now=NOW) == 7.0
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=NOW) == 90.0
    earlier = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(unreadable, now=NOW) is None


def test_the_default_schedule_is_the_standard_webhooks_one() -> None:
    settings = load_settings(None)
    assert settings.webhooks_retry_schedule_s == list(DEFAULT_WEBHOOK_SCHEDULE_S)
    assert DEFAULT_WEBHOOK_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert settings.webhooks_timeout_s == 10.0


def test_the_schedule_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_WEBHOOKS_RETRY_SCHEDULE_S", "[0, 0.5, 2]")
    assert load_settings(None).webhooks_retry_schedule_s == [0, 0.5, 2]
    for bad in ("[]", "[-1]", "[0, 9999999999]"):
        monkeypatch.setenv("GENGATE_WEBHOOKS_RETRY_SCHEDULE_S", bad)
        with pytest.raises(ValidationError):
            load_settings(None)
