"""The queue side of the jobs table: claims, leases, and the sweeps of the reaper.

A claim moves queued jobs to running in one statement and gives each a new lease
token (a fencing token: it only ever grows). Every later change a worker makes
is conditional on that token, so a job rescued from a lapsed lease and claimed
again cannot be finished by its first worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update

from gengate.domain.states import JobStatus
from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.jobs import RETURNED_ATTEMPT, JobRow, transition
from gengate.store.schema import jobs
from gengate.store.types import UTCDateTime

QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value


_claims: dict[str, Any] = {}


def _claim_statement(conn: DbConnection) -> Any:
    """The claim, built once per dialect: pick the head of the model's queue (locking
    the rows on PostgreSQL) and move it to running under a new lease, in one statement."""
    dialect_name = dialect.name(conn)
    if dialect_name not in _claims:
        now = bindparam("c_now", type_=UTCDateTime())
        candidates = (
            select(jobs.c.id)
            .where(
                jobs.c.model == bindparam("c_model"),
                jobs.c.status == QUEUED,
                jobs.c.run_after <= now,
                jobs.c.expires_at > now,
                or_(jobs.c.cancel_at.is_(None), jobs.c.cancel_at > now),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.fair_tag, jobs.c.id)
            .limit(bindparam("c_limit"))
        )
        # A CTE, not `id IN (subquery)`: PostgreSQL may plan the IN as a semi-join that
        # runs the LIMITed, SKIP LOCKED subquery again per row, claiming far past LIMIT.
        picked = dialect.lock_for_claim(conn, candidates).cte("picked")
        _claims[dialect_name] = (
            update(jobs)
            .where(jobs.c.id == picked.c.id, jobs.c.status == QUEUED)
            .values(
                status=RUNNING,
                lease_token=jobs.c.lease_token + 1,
                lease_expires_at=bindparam("c_lease_expires_at", type_=UTCDateTime()),
                worker_id=bindparam("c_worker_id"),
                attempts=jobs.c.attempts + 1,
                started_at=func.coalesce(jobs.c.started_at, now),
                progress=0,
                version=jobs.c.version + 1,
                updated_at=now,
            )
            .returning(*jobs.c)
        )
    return _claims[dialect_name]


async def claim_jobs(
    conn: DbConnection,
    *,
    model: str,
    worker_id: str,
    limit: int,
    lease_ttl: timedelta,
    now: datetime,
    fleet_limit: int | None = None,
) -> list[JobRow]:
    """Claim up to `limit` runnable jobs of `model`, in run order, never letting more
    than `fleet_limit` jobs of the model run at once across all workers."""
    if fleet_limit is not None:
        lock = dialect.take_turns(conn, f"claim:{model}")
        if lock is not None:
            await conn.execute(lock)
        running = await conn.execute(
            select(func.count()).where(jobs.c.model == model, jobs.c.status == RUNNING)
        )
        limit = min(limit, fleet_limit - int(running.scalar_one()))
        if limit <= 0:
            return []
    result = await conn.execute(
        _claim_statement(conn),
        {
            "c_model": model,
            "c_now": now,
            "c_limit": limit,
            "c_worker_id": worker_id,
            "c_lease_expires_at": now + lease_ttl,
        },
    )
    claimed = list(result.all())
    claimed.sort(key=lambda row: (-row.priority, row.fair_tag, row.id))
    return claimed


_RENEW = (
    update(jobs)
    .where(
        jobs.c.id.in_(bindparam("r_ids", expanding=True)),
        jobs.c.worker_id == bindparam("r_worker_id"),
        jobs.c.status == RUNNING,
    )
    .values(lease_expires_at=bindparam("r_expires_at", type_=UTCDateTime()))
    .returning(jobs.c.id, jobs.c.lease_token)
)


async def renew_leases(
    conn: DbConnection,
    *,
    worker_id: str,
    job_ids: Sequence[uuid.UUID],
    lease_ttl: timedelta,
    now: datetime,
) -> list[tuple[uuid.UUID, int]]:
    """Extend the leases of the jobs this worker is running; returns the (id, token)
    pairs still held. Only jobs it really runs: a job whose run ended without its
    outcome recorded (the database was down) must be left to lapse and be rescued."""
    if not job_ids:
        return []
    result = await conn.execute(
        _RENEW,
        {"r_ids": list(job_ids), "r_worker_id": worker_id, "r_expires_at": now + lease_ttl},
    )
    return [(row.id, row.lease_token) for row in result.all()]


async def lapsed_leases(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[Any]:
    """Running jobs whose worker stopped renewing: killed, hung or partitioned away."""
    result = await conn.execute(
        select(jobs)
        .where(jobs.c.status == RUNNING, jobs.c.lease_expires_at < now)
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
    )
    return result.all()


async def expired_in_queue(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[Any]:
    """Queued jobs that waited longer than their model's queue TTL."""
    result = await conn.execute(
        select(jobs.c.id).where(jobs.c.status == QUEUED, jobs.c.expires_at <= now).limit(limit)
    )
    return result.all()


async def past_cancel_after(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[Any]:
    """Active jobs whose `Cancel-After` deadline has passed."""
    result = await conn.execute(
        select(jobs.c.id)
        .where(
            jobs.c.cancel_at.is_not(None),
            jobs.c.cancel_at <= now,
            jobs.c.status.in_([QUEUED, RUNNING]),
        )
        .limit(limit)
    )
    return result.all()


async def next_run_after(conn: DbConnection, *, model: str, now: datetime) -> datetime | None:
    """When the earliest delayed (retrying) job of `model` becomes runnable."""
    result = await conn.execute(
        select(func.min(jobs.c.run_after)).where(
            jobs.c.model == model, jobs.c.status == QUEUED, jobs.c.run_after > now
        )
    )
    value: datetime | None = result.scalar_one()
    return value


async def changed_elsewhere(
    conn: DbConnection, held: Sequence[tuple[uuid.UUID, int]]
) -> list[tuple[uuid.UUID, str]]:
    """Of these (id, lease token) pairs, the jobs no longer running under that lease
    (cancelled, rescued, or finished), with their status now."""
    if not held:
        return []
    tokens = dict(held)
    result = await conn.execute(
        select(jobs.c.id, jobs.c.status, jobs.c.lease_token).where(jobs.c.id.in_(list(tokens)))
    )
    return [
        (row.id, row.status)
        for row in result.all()
        if row.status != RUNNING or row.lease_token != tokens[row.id]
    ]


async def requeue(
    conn: DbConnection,
    job_id: uuid.UUID,
    *,
    lease_token: int,
    run_after: datetime,
    now: datetime,
    count_attempt: bool = True,
) -> JobRow | None:
    """Running → queued under the worker's lease; a hand-back does not count an attempt."""
    values: dict[str, Any] = {"run_after": run_after, "progress": 0}
    if not count_attempt:
        values["attempts"] = RETURNED_ATTEMPT
    return await transition(
        conn, job_id, JobStatus.QUEUED, now=now, values=values, lease_token=lease_token
    )


async def claimable_count(conn: DbConnection, *, model: str, now: datetime) -> int:
    """Jobs of `model` that a worker could claim right now."""
    result = await conn.execute(
        select(func.count())
        .select_from(jobs)
        .where(
            jobs.c.model == model,
            jobs.c.status == QUEUED,
            jobs.c.run_after <= now,
            jobs.c.expires_at > now,
        )
    )
    return int(result.scalar_one())
