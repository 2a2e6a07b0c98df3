"""Jobs: insert, read, list, and the one guarded UPDATE through which every status
change passes (`transition`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update

from gengate.domain.ids import uuid7_floor
from gengate.domain.states import TERMINAL_STATUSES, JobStatus, sources_of
from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import fair_share, jobs
from gengate.store.types import AnyRow

JobRow = AnyRow


async def insert_job(conn: DbConnection, values: dict[str, Any]) -> JobRow:
    result = await conn.execute(insert(jobs).values(**values).returning(*jobs.c))
    return result.one()


async def get_job(
    conn: DbConnection, job_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> JobRow | None:
    query = select(jobs).where(jobs.c.id == job_id)
    if account_id is not None:
        query = query.where(jobs.c.account_id == account_id)
    return (await conn.execute(query)).first()


@dataclass(frozen=True, slots=True)
class JobFilters:
    status: JobStatus | None = None
    modality: str | None = None
    model: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None


async def list_jobs(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    filters: JobFilters,
    before: uuid.UUID | None,
    limit: int,
) -> Sequence[JobRow]:
    """Newest first by id (time-ordered), keyset-paginated: stable under inserts."""
    query = select(jobs).where(jobs.c.account_id == account_id)
    if before is not None:
        query = query.where(jobs.c.id < before)
    if filters.status is not None:
        query = query.where(jobs.c.status == filters.status.value)
    if filters.modality is not None:
        query = query.where(jobs.c.modality == filters.modality)
    if filters.model is not None:
        query = query.where(jobs.c.model == filters.model)
    for key, value in filters.tags:
        query = query.where(dialect.has_tag(conn, jobs.c.tags, key, value))
    if filters.created_after is not None:
        query = query.where(
            jobs.c.id >= uuid7_floor(filters.created_after),
            jobs.c.created_at > filters.created_after,
        )
    if filters.created_before is not None:
        query = query.where(jobs.c.created_at < filters.created_before)
    result = await conn.execute(query.order_by(jobs.c.id.desc()).limit(limit))
    return result.all()


def _ahead_of(row: JobRow, now: datetime) -> Any:
    """Queued jobs of the same model that run before `row` (the claim order)."""
    return and_(
        jobs.c.model == row.model,
        jobs.c.status == JobStatus.QUEUED.value,
        # A retry still waiting out its backoff is not counted as ahead.
        jobs.c.run_after <= now,
        or_(
            jobs.c.priority > row.priority,
            and_(
                jobs.c.priority == row.priority,
                or_(
                    jobs.c.fair_tag < row.fair_tag,
                    and_(jobs.c.fair_tag == row.fair_tag, jobs.c.id < row.id),
                ),
            ),
        ),
    )


async def queue_position(conn: DbConnection, row: JobRow, *, now: datetime) -> int:
    result = await conn.execute(select(func.count()).select_from(jobs).where(_ahead_of(row, now)))
    return int(result.scalar_one())


async def queued_count(conn: DbConnection, model: str, *, cap: int) -> int:
    """How many jobs of `model` are queued, counting no further than `cap`."""
    capped = (
        select(jobs.c.id)
        .where(jobs.c.model == model, jobs.c.status == JobStatus.QUEUED.value)
        .limit(cap)
        .subquery()
    )
    result = await conn.execute(select(func.count()).select_from(capped))
    return int(result.scalar_one())


async def assign_fair_tag(conn: DbConnection, *, model: str, account_id: uuid.UUID) -> int:
    """The next fair-share tag for this account on this model (see domain.scheduling)."""
    head = (
        select(jobs.c.fair_tag)
        .where(jobs.c.model == model, jobs.c.status == JobStatus.QUEUED.value)
        .order_by(jobs.c.priority.desc(), jobs.c.fair_tag, jobs.c.id)
        .limit(1)
        .scalar_subquery()
    )
    newest = (
        select(func.max(fair_share.c.last_tag)).where(fair_share.c.model == model).scalar_subquery()
    )
    floor = (await conn.execute(select(func.coalesce(head, newest, 0)))).scalar_one()
    # next_fair_tag(last, floor) == max(last, floor) + 1, in one atomic upsert.
    statement = dialect.insert(conn, fair_share).values(
        model=model, account_id=account_id, last_tag=floor + 1
    )
    statement = statement.on_conflict_do_update(
        index_elements=["model", "account_id"],
        set_={"last_tag": dialect.greatest(conn, fair_share.c.last_tag, floor) + 1},
    ).returning(fair_share.c.last_tag)
    return int((await conn.execute(statement)).scalar_one())


async def transition(
    conn: DbConnection,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    now: datetime,
    values: dict[str, Any] | None = None,
    lease_token: int | None = None,
    only_from: Collection[JobStatus] | None = None,
) -> JobRow | None:
    """Move a job to `target` if the state machine allows it from its current status.

    The guard is in the UPDATE itself (`WHERE status IN (...)`, plus the lease token
    when a worker makes the change), so concurrent writers cannot both succeed.
    Returns the updated row, or None when the guard did not match.
    """
    sources = sources_of(target)
    if only_from is not None:
        sources = sources & frozenset(only_from)
    changes: dict[str, Any] = {
        "status": target.value,
        "version": jobs.c.version + 1,
        "updated_at": now,
    }
    if target in TERMINAL_STATUSES or target is JobStatus.QUEUED:
        changes.update(lease_expires_at=None, worker_id=None)
    if target in TERMINAL_STATUSES:
        changes["completed_at"] = now
    changes.update(values or {})
    statement = update(jobs).where(
        jobs.c.id == job_id, jobs.c.status.in_([s.value for s in sources])
    )
    if lease_token is not None:
        statement = statement.where(jobs.c.lease_token == lease_token)
    result = await conn.execute(statement.values(**changes).returning(*jobs.c))
    return result.first()


def capped_cost(cost_micro: int) -> Any:
    """The charge for a job: its cost, never more than its reservation."""
    return case((jobs.c.reserved_micro < cost_micro, jobs.c.reserved_micro), else_=cost_micro)


async def update_progress(
    conn: DbConnection,
    job_id: uuid.UUID,
    *,
    lease_token: int,
    progress: int,
    scenes_completed: int | None,
    scenes_total: int | None,
    now: datetime,
) -> bool:
    values: dict[str, Any] = {
        "progress": progress,
        "version": jobs.c.version + 1,
        "updated_at": now,
    }
    if scenes_completed is not None:
        values["scenes_completed"] = scenes_completed
    if scenes_total is not None:
        values["scenes_total"] = scenes_total
    result = await conn.execute(
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.lease_token == lease_token,
            jobs.c.status == JobStatus.RUNNING.value,
        )
        .values(**values)
        .returning(jobs.c.id)
    )
    return result.first() is not None


async def active_counts(conn: DbConnection) -> Sequence[AnyRow]:
    """(model, status, count) of active jobs, read from the partial indexes: the
    queue-depth and running gauges of /metrics (terminal jobs are counters)."""
    result = await conn.execute(
        select(jobs.c.model, jobs.c.status, func.count().label("n"))
        .where(jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
        .group_by(jobs.c.model, jobs.c.status)
    )
    return result.all()
