"""Pure scheduling rules: fair-share tags, retry backoff, poll hints.

Fair share is start-time fair queuing. Every queued job carries a `fair_tag`;
workers run jobs by (priority desc, fair_tag, id). A new job's tag is one past the
later of its account's last tag on that model and the head of the model's queue,
so an account that floods a model only queues behind itself: another account's
next job lands right after the current head.
"""

from __future__ import annotations

import random

from gengate.domain.states import JobStatus


def next_fair_tag(account_last_tag: int | None, queue_head_tag: int | None) -> int:
    """The tag for an account's next job on a model."""
    return max(account_last_tag or 0, queue_head_tag or 0) + 1


def retry_backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter in its upper half: attempt 1 → ~base."""
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return float(ceiling / 2 + rng.random() * ceiling / 2)


POLL_HINT_S = {"image": 1, "voice": 2, "music": 3, "3d": 3, "video": 5, "story": 5}


def poll_hint_s(modality: str, status: JobStatus) -> int | None:
    """The `Retry-After` hint for a non-terminal job, by modality."""
    if status.is_terminal:
        return None
    hint = POLL_HINT_S.get(modality, 2)
    return hint * 2 if status is JobStatus.QUEUED else hint
