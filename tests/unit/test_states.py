"""Job statuses: the allowed transitions, written out here independently of the code."""

from __future__ import annotations

import itertools

import pytest

from gengate.domain.errors import Conflict, InvalidTransition
from gengate.domain.states import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
    can_transition,
    check_transition,
    sources_of,
)

Q, R, S, P, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.PARTIAL,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)

# SPEC "Statuses": queued → running → succeeded | partial | failed; queued|running → cancelled;
# plus running → queued (requeue on retry or lapsed lease) and queued → failed (queue TTL).
EXPECTED_ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (Q, R),
        (Q, C),
        (Q, F),
        (R, Q),
        (R, S),
        (R, P),
        (R, F),
        (R, C),
    }
)

ALL_PAIRS = list(itertools.product(list(JobStatus), repeat=2))


def test_there_are_six_statuses() -> None:
    assert {s.value for s in JobStatus} == {
        "queued",
        "running",
        "succeeded",
        "partial",
        "failed",
        "cancelled",
    }
    assert len(ALL_PAIRS) == 36


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: str(s))
def test_every_transition_matches_the_table(current: JobStatus, target: JobStatus) -> None:
    if (current, target) in EXPECTED_ALLOWED:
        check_transition(current, target)
        assert can_transition(current, target)
    else:
        assert not can_transition(current, target)
        with pytest.raises(InvalidTransition) as caught:
            check_transition(current, target)
        error = caught.value
        assert isinstance(error, Conflict)
        assert error.http_status == 409
        assert error.code == "conflict"
        assert error.details == {"status": current.value, "target": target.value}
        assert current.value in error.message and target.value in error.message


@pytest.mark.parametrize("terminal", [S, P, F, C])
def test_a_terminal_status_never_changes(terminal: JobStatus) -> None:
    assert terminal.is_terminal
    for target in JobStatus:
        with pytest.raises(InvalidTransition):
            check_transition(terminal, target)


def test_terminal_and_active_partition_the_statuses() -> None:
    assert frozenset({S, P, F, C}) == TERMINAL_STATUSES
    assert frozenset({Q, R}) == ACTIVE_STATUSES
    assert not Q.is_terminal
    assert not R.is_terminal


@pytest.mark.parametrize("target", list(JobStatus))
def test_sources_of_lists_every_status_that_may_enter_target(target: JobStatus) -> None:
    expected = frozenset(src for src, dst in EXPECTED_ALLOWED if dst == target)
    assert sources_of(target) == expected


def test_sources_of_examples() -> None:
    assert sources_of(C) == {Q, R}
    assert sources_of(S) == {R}
    assert sources_of(F) == {Q, R}
    assert sources_of(Q) == {R}
