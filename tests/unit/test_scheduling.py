"""Fair-share tags, retry backoff with jitter, and poll hints."""

from __future__ import annotations

import itertools
import random

import pytest

from gengate.domain.scheduling import next_fair_tag, poll_hint_s, retry_backoff_s
from gengate.domain.states import JobStatus


@pytest.mark.parametrize(
    ("account_last", "queue_head", "expected"),
    [
        (None, None, 1),  # first job on an empty model
        (5, None, 6),  # queue drained, account continues after its own last tag
        (None, 10, 11),  # a new account lands right after the head
        (3, 10, 11),  # an idle account does not jump ahead of the head
        (12, 10, 13),  # a flooding account queues behind itself
    ],
)
def test_next_fair_tag(account_last: int | None, queue_head: int | None, expected: int) -> None:
    assert next_fair_tag(account_last, queue_head) == expected


def test_a_flooding_account_cannot_starve_another() -> None:
    head = 1
    flood_last: int | None = None
    for _ in range(100):
        flood_last = next_fair_tag(flood_last, head)
    newcomer = next_fair_tag(None, head)
    assert flood_last is not None
    assert newcomer < flood_last
    assert newcomer == head + 1


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8])
def test_retry_backoff_within_upper_half_of_its_ceiling(attempt: int) -> None:
    rng = random.Random(1234)
    ceiling = min(300.0, 2.0 * 2 ** (attempt - 1))
    for _ in range(500):
        delay = retry_backoff_s(attempt, base_s=2.0, cap_s=300.0, rng=rng)
        assert ceiling / 2 <= delay <= ceiling


def test_retry_backoff_first_attempt_is_about_base() -> None:
    rng = random.Random(7)
    delays = [retry_backoff_s(1, base_s=2.0, cap_s=300.0, rng=rng) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)


def test_retry_backoff_is_capped() -> None:
    rng = random.Random(99)
    for attempt in (10, 20, 50, 100):
        delay = retry_backoff_s(attempt, base_s=2.0, cap_s=30.0, rng=rng)
        assert 15.0 <= delay <= 30.0


def test_retry_backoff_grows_with_attempts() -> None:
    def mean(attempt: int) -> float:
        rng = random.Random(42)
        samples = [retry_backoff_s(attempt, base_s=1.0, cap_s=1000.0, rng=rng) for _ in range(200)]
        return sum(samples) / len(samples)

    means = [mean(attempt) for attempt in range(1, 8)]
    assert all(a < b for a, b in itertools.pairwise(means))
    # With the same seed, the delay doubles exactly with each attempt below the cap.
    assert means[1] == pytest.approx(2 * means[0])


def test_retry_backoff_is_jittered_and_deterministic_for_a_seed() -> None:
    first = [retry_backoff_s(3, base_s=2.0, cap_s=300.0, rng=random.Random(5)) for _ in range(3)]
    assert len(set(first)) == 1  # same seed, same delay
    rng = random.Random(5)
    spread = {retry_backoff_s(3, base_s=2.0, cap_s=300.0, rng=rng) for _ in range(50)}
    assert len(spread) > 1  # the jitter varies between calls


def test_retry_backoff_zero_base_retries_at_once() -> None:
    assert retry_backoff_s(3, base_s=0.0, cap_s=300.0, rng=random.Random(0)) == 0.0


@pytest.mark.parametrize(
    ("modality", "running"),
    [("image", 1), ("voice", 2), ("music", 3), ("3d", 3), ("video", 5), ("story", 5)],
)
def test_poll_hint_by_modality(modality: str, running: int) -> None:
    assert poll_hint_s(modality, JobStatus.RUNNING) == running
    assert poll_hint_s(modality, JobStatus.QUEUED) == 2 * running


def test_poll_hint_for_an_unknown_modality() -> None:
    assert poll_hint_s("hologram", JobStatus.RUNNING) == 2


@pytest.mark.parametrize(
    "status",
    [JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED],
)
def test_no_poll_hint_for_terminal_jobs(status: JobStatus) -> None:
    assert poll_hint_s("video", status) is None
