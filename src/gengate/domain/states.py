"""Job statuses and the one table of allowed transitions.

    queued ──► running ──► succeeded | partial | failed
      │  ▲        │
      │  └────────┘  (requeue: retry with backoff, lapsed lease, graceful hand-back)
      └──────────────► cancelled ◄── running
    queued ──► failed  (queue TTL expired)

A terminal job never changes status again.
"""

from __future__ import annotations

from enum import StrEnum

from gengate.domain.errors import InvalidTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.QUEUED,
            JobStatus.SUCCEEDED,
            JobStatus.PARTIAL,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.PARTIAL: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise InvalidTransition unless `current → target` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current.value, target.value)


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `target` may be entered (used to build guarded UPDATEs)."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)
