"""Status changes after submit: completion with settlement, requeues, and the sweeps
that rescue lapsed leases and enforce deadlines.

Settlement happens in the same transaction as the terminal transition, so a job
is charged exactly when it becomes terminal, and only once (the transition's guard
and the ledger's unique index both see to it).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from gengate.domain.ids import format_id
from gengate.domain.scheduling import retry_backoff_s
from gengate.domain.states import JobStatus
from gengate.services import webhooks
from gengate.services.gateway import Gateway
from gengate.services.notifications import JobChange
from gengate.store import jobs as job_store
from gengate.store import ledger
from gengate.store import queue as queue_store
from gengate.store.database import DbConnection
from gengate.store.jobs import Finish, JobRow

logger = logging.getLogger("gengate.jobs")
SWEEP_BATCH = 100


def job_error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


async def complete_job(
    conn: DbConnection,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    now: datetime,
    cost_micro: int = 0,
    result: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    lease_token: int | None = None,
    only_from: Collection[JobStatus] | None = None,
) -> JobRow | None:
    """Make a job terminal and settle its money, in the caller's transaction.

    Only succeeded and partial jobs are charged, at most their reservation. A job with a
    `webhook_url` gets its webhook message in the same transaction.
    Returns None when the job was not in a state (or lease) that allows this.
    """
    if not target.is_terminal:
        raise ValueError(f"{target} is not terminal")
    charged = target in (JobStatus.SUCCEEDED, JobStatus.PARTIAL)
    cost_micro = max(0, cost_micro)  # a negative usage report is never a credit
    values: dict[str, Any] = {
        "cost_micro": job_store.CAPPED_CHARGE if charged else 0,
        "result": result,
        "error": error,
    }
    if target is JobStatus.SUCCEEDED:
        values["progress"] = 100
    row = await job_store.transition(
        conn,
        job_id,
        target,
        now=now,
        values=values,
        lease_token=lease_token,
        only_from=only_from,
        params={"charge": cost_micro} if charged else None,
    )
    if row is None:
        return None
    if charged and cost_micro > row.cost_micro:
        logger.warning(
            "cost capped at the reservation",
            extra={
                "job_id": format_id("job", row.id),
                "cost_micro": cost_micro,
                "charged_micro": row.cost_micro,
            },
        )
    await ledger.release_and_charge(
        conn,
        account_id=row.account_id,
        job_id=row.id,
        release_micro=row.reserved_micro,
        charge_micro=row.cost_micro,
        now=now,
    )
    # The webhook's outbox message commits with the status change, or not at all.
    return await webhooks.queue_event(conn, row, now=now)


async def complete_runs(
    conn: DbConnection, finishes: Sequence[Finish], *, now: datetime
) -> list[JobRow]:
    """Record runs that produced their outputs, in the caller's transaction: each job
    terminal under its own lease, charged (at most its reservation), its webhook message
    queued — many jobs at once. Returns the jobs whose lease still held."""
    rows = await job_store.finish_running(conn, finishes, now=now)
    asked = {finish.job_id: finish.charge_micro for finish in finishes}
    for row in rows:
        if asked[row.id] > row.cost_micro:
            logger.warning(
                "cost capped at the reservation",
                extra={
                    "job_id": format_id("job", row.id),
                    "cost_micro": asked[row.id],
                    "charged_micro": row.cost_micro,
                },
            )
    await ledger.settle_many(
        conn,
        [(row.account_id, row.id, row.reserved_micro, row.cost_micro) for row in rows],
        now=now,
    )
    return [await webhooks.queue_event(conn, row, now=now) for row in rows]


async def requeue_job(
    conn: DbConnection,
    job_id: uuid.UUID,
    *,
    lease_token: int,
    now: datetime,
    delay_s: float,
    count_attempt: bool = True,
) -> JobRow | None:
    """Put a running job back in the queue (a retry, a rescue, or a hand-back)."""
    return await queue_store.requeue(
        conn,
        job_id,
        lease_token=lease_token,
        run_after=now + timedelta(seconds=delay_s),
        now=now,
        count_attempt=count_attempt,
    )


def announce(gw: Gateway, row: JobRow, previous: str | None) -> None:
    """After commit: log the transition and wake whoever waits on this job or queue."""
    logger.info(
        "job %s",
        row.status,
        extra={
            "event": "job.transition",
            "job_id": format_id("job", row.id),
            "account_id": format_id("acct", row.account_id),
            "model": row.model,
            "from": previous,
            "to": row.status,
            "attempt": row.attempts,
        },
    )
    gw.metrics.transitions.labels(row.model, row.status).inc()
    gw.notifier.job_changed(JobChange(row.id, row.account_id, row.model, row.status))
    if row.status == JobStatus.QUEUED:
        gw.notifier.queue_changed(row.model)
    elif JobStatus(row.status).is_terminal and _has_fleet_cap(gw, row.model):
        # A fleet slot freed: wake idle workers of the model wherever they are.
        gw.notifier.queue_changed(row.model)


def _has_fleet_cap(gw: Gateway, model: str) -> bool:
    return model in gw.catalog and gw.catalog.get(model).config.max_running is not None


async def rescue_lapsed_leases(gw: Gateway, rng: random.Random) -> int:
    """Requeue (or, after max_attempts, fail with worker_lost) jobs whose lease lapsed."""
    now = gw.clock()
    changed: list[tuple[JobRow, str]] = []
    async with gw.db.transaction() as conn:
        for stale in await queue_store.lapsed_leases(conn, now=now, limit=SWEEP_BATCH):
            if stale.attempts < stale.max_attempts:
                config = gw.catalog.get(stale.model).config if stale.model in gw.catalog else None
                delay = (
                    retry_backoff_s(
                        stale.attempts,
                        base_s=config.retry_base_s,
                        cap_s=config.retry_cap_s,
                        rng=rng,
                    )
                    if config
                    else 0.0
                )
                row = await requeue_job(
                    conn, stale.id, lease_token=stale.lease_token, now=now, delay_s=delay
                )
            else:
                row = await complete_job(
                    conn,
                    stale.id,
                    JobStatus.FAILED,
                    now=now,
                    lease_token=stale.lease_token,
                    error=job_error(
                        "worker_lost",
                        f"The worker running this job was lost {stale.attempts} times.",
                    ),
                )
            if row is not None:
                changed.append((row, JobStatus.RUNNING.value))
    for row, previous in changed:
        announce(gw, row, previous)
    return len(changed)


async def expire_queued(gw: Gateway) -> int:
    """Fail queued jobs that outlived their model's queue TTL."""
    now = gw.clock()
    changed = []
    async with gw.db.transaction() as conn:
        for due in await queue_store.expired_in_queue(conn, now=now, limit=SWEEP_BATCH):
            row = await complete_job(
                conn,
                due.id,
                JobStatus.FAILED,
                now=now,
                only_from={JobStatus.QUEUED},
                error=job_error("expired", "The job waited in the queue longer than allowed."),
            )
            if row is not None:
                changed.append(row)
    for row in changed:
        announce(gw, row, JobStatus.QUEUED.value)
    return len(changed)


async def apply_cancel_after(gw: Gateway) -> int:
    """Cancel active jobs whose Cancel-After deadline passed, wherever they are."""
    now = gw.clock()
    changed = []
    async with gw.db.transaction() as conn:
        for due in await queue_store.past_cancel_after(conn, now=now, limit=SWEEP_BATCH):
            row = await complete_job(
                conn,
                due.id,
                JobStatus.CANCELLED,
                now=now,
                only_from={JobStatus.QUEUED, JobStatus.RUNNING},
            )
            if row is not None:
                changed.append(row)
    for row in changed:
        announce(gw, row, None)
    return len(changed)
