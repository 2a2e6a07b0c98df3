"""Jobs: insert, read, list, and the one guarded UPDATE through which every status
change passes (`transition`)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from gengate.domain.ids import uuid7_floor
from gengate.domain.states import TERMINAL_STATUSES, JobStatus, sources_of
from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import fair_share, jobs, outputs
from gengate.store.types import AnyRow

JobRow = AnyRow


# Hot statements are built once, with bound parameters; SQLAlchemy then reuses their
# compiled form and skips rebuilding and re-hashing a statement on every call.
_INSERT_JOB = insert(jobs).returning(*jobs.c)
_GET_JOB = select(jobs).where(jobs.c.id == bindparam("job_id"))
_GET_ACCOUNT_JOB = _GET_JOB.where(jobs.c.account_id == bindparam("account_id"))


async def insert_job(conn: DbConnection, values: dict[str, Any]) -> JobRow:
    return (await conn.execute(_INSERT_JOB, values)).one()


async def get_job(
    conn: DbConnection, job_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> JobRow | None:
    if account_id is None:
        return (await conn.execute(_GET_JOB, {"job_id": job_id})).first()
    return (
        await conn.execute(_GET_ACCOUNT_JOB, {"job_id": job_id, "account_id": account_id})
    ).first()


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
    # Job records show times in whole milliseconds, so the bounds are whole milliseconds
    # too: a job made in the same millisecond as `created_after` is not after it.
    if filters.created_after is not None:
        after = _next_millisecond(filters.created_after)
        query = query.where(jobs.c.id >= uuid7_floor(after), jobs.c.created_at >= after)
    if filters.created_before is not None:
        query = query.where(jobs.c.created_at < _whole_millisecond(filters.created_before))
    result = await conn.execute(query.order_by(jobs.c.id.desc()).limit(limit))
    return result.all()


def _whole_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _next_millisecond(moment: datetime) -> datetime:
    return _whole_millisecond(moment) + timedelta(milliseconds=1)


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


_QUEUED_COUNT = select(func.count()).select_from(
    select(jobs.c.id)
    .where(jobs.c.model == bindparam("model"), jobs.c.status == JobStatus.QUEUED.value)
    .limit(bindparam("cap"))
    .subquery()
)


async def queued_count(conn: DbConnection, model: str, *, cap: int) -> int:
    """How many jobs of `model` are queued, counting no further than `cap`. Submits to
    one model take turns from here to commit, so concurrent submits cannot all see
    room for one more job and overfill the queue."""
    lock = dialect.take_turns(conn, f"queue:{model}")
    if lock is not None:
        await conn.execute(lock)
    result = await conn.execute(_QUEUED_COUNT, {"model": model, "cap": cap})
    return int(result.scalar_one())


_fair_upserts: dict[str, Any] = {}


def _fair_upsert(conn: DbConnection) -> Any:
    """max(last, floor) + 1 as one atomic upsert (see domain.scheduling.next_fair_tag),
    where floor is the tag at the head of the model's queue or, with an empty queue,
    the newest tag any account got on the model."""
    dialect_name = dialect.name(conn)
    if dialect_name not in _fair_upserts:
        model: Any = bindparam("p_model")
        head = (
            select(jobs.c.fair_tag)
            .where(jobs.c.model == model, jobs.c.status == JobStatus.QUEUED.value)
            .order_by(jobs.c.priority.desc(), jobs.c.fair_tag, jobs.c.id)
            .limit(1)
            .scalar_subquery()
        )
        others = fair_share.alias("others")
        newest = (
            select(func.max(others.c.last_tag)).where(others.c.model == model).scalar_subquery()
        )
        floor = func.coalesce(head, newest, 0)
        statement = dialect.insert(conn, fair_share).values(
            model=model, account_id=bindparam("p_account_id"), last_tag=floor + 1
        )
        _fair_upserts[dialect_name] = statement.on_conflict_do_update(
            index_elements=["model", "account_id"],
            set_={"last_tag": dialect.greatest(conn, fair_share.c.last_tag, floor) + 1},
        ).returning(fair_share.c.last_tag)
    return _fair_upserts[dialect_name]


async def assign_fair_tag(conn: DbConnection, *, model: str, account_id: uuid.UUID) -> int:
    """The next fair-share tag for this account on this model (see domain.scheduling)."""
    result = await conn.execute(_fair_upsert(conn), {"p_model": model, "p_account_id": account_id})
    return int(result.scalar_one())


#: Values a transition may compute from the row itself (see `transition`).
#: The charge of a job: its cost (the `charge` parameter), never above its reservation.
CAPPED_CHARGE = case(
    (jobs.c.reserved_micro < bindparam("charge", type_=BigInteger()), jobs.c.reserved_micro),
    else_=bindparam("charge", type_=BigInteger()),
)
#: A hand-back: the attempt the worker used is given back.
RETURNED_ATTEMPT = jobs.c.attempts - 1
_ROW_EXPRESSIONS = {id(CAPPED_CHARGE): CAPPED_CHARGE, id(RETURNED_ATTEMPT): RETURNED_ATTEMPT}
_transitions: dict[tuple[Any, ...], Any] = {}


def _transition_statement(
    target: JobStatus, sources: frozenset[JobStatus], fenced: bool, values: dict[str, Any]
) -> Any:
    shape = tuple(
        (name, id(value) if isinstance(value, ColumnElement) else None)
        for name, value in sorted(values.items())
    )
    key = (target, sources, fenced, shape)
    statement = _transitions.get(key)
    if statement is None:
        changes: dict[str, Any] = {"version": jobs.c.version + 1}
        for name, expression_id in shape:
            if expression_id is None:
                changes[name] = bindparam(f"v_{name}", type_=jobs.c[name].type)
            elif expression_id in _ROW_EXPRESSIONS:
                changes[name] = _ROW_EXPRESSIONS[expression_id]
            else:
                raise ValueError(f"{name}: only the module's row expressions may be used")
        statement = update(jobs).where(
            jobs.c.id == bindparam("w_job_id"),
            jobs.c.status.in_(sorted(s.value for s in sources)),
        )
        if fenced:
            statement = statement.where(jobs.c.lease_token == bindparam("w_lease_token"))
        statement = statement.values(changes).returning(*jobs.c)
        _transitions[key] = statement
    return statement


async def transition(
    conn: DbConnection,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    now: datetime,
    values: dict[str, Any] | None = None,
    lease_token: int | None = None,
    only_from: Collection[JobStatus] | None = None,
    params: dict[str, Any] | None = None,
) -> JobRow | None:
    """Move a job to `target` if the state machine allows it from its current status.

    The guard is in the UPDATE itself (`WHERE status IN (...)`, plus the lease token
    when a worker makes the change), so concurrent writers cannot both succeed.
    `values` are plain values or one of this module's row expressions
    (`CAPPED_CHARGE`, `RETURNED_ATTEMPT`), whose parameters come in `params`.
    Returns the updated row, or None when the guard did not match.
    """
    sources = sources_of(target)
    if only_from is not None:
        sources = sources & frozenset(only_from)
    changes: dict[str, Any] = {"status": target.value, "updated_at": now}
    if target in TERMINAL_STATUSES or target is JobStatus.QUEUED:
        changes.update(lease_expires_at=None, worker_id=None)
    if target in TERMINAL_STATUSES:
        changes["completed_at"] = now
    changes.update(values or {})
    statement = _transition_statement(target, sources, lease_token is not None, changes)
    bound: dict[str, Any] = {"w_job_id": job_id, **(params or {})}
    if lease_token is not None:
        bound["w_lease_token"] = lease_token
    for name, value in changes.items():
        if not isinstance(value, ColumnElement):
            bound[f"v_{name}"] = value
    return (await conn.execute(statement, bound)).first()


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


_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


async def prune_finished(conn: DbConnection, *, completed_before: datetime, limit: int) -> int:
    """Delete up to `limit` terminal jobs finished before `completed_before` (oldest
    first, walking the time-ordered primary key) whose files are already deleted, with
    their output rows. Ledger entries stay: the ledger is append-only and keeps the id."""
    doomed = (
        await conn.execute(
            select(jobs.c.id)
            .where(
                jobs.c.id < uuid7_floor(completed_before),
                jobs.c.status.in_(_TERMINAL),
                jobs.c.completed_at < completed_before,
                # Files go first (the janitor): a job whose files live on is kept.
                ~exists().where(outputs.c.job_id == jobs.c.id, outputs.c.deleted_at.is_(None)),
            )
            .order_by(jobs.c.id)
            .limit(limit)
        )
    ).all()
    ids = [row.id for row in doomed]
    if ids:
        await conn.execute(delete(outputs).where(outputs.c.job_id.in_(ids)))
        await conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
    return len(ids)


@dataclass(frozen=True, slots=True)
class Finish:
    """A run that produced its outputs: the job becomes `status` (succeeded or partial)
    and is charged `charge_micro`, capped at its reservation."""

    job_id: uuid.UUID
    lease_token: int
    status: JobStatus
    charge_micro: int
    result: dict[str, Any]
    scenes_completed: int | None = None
    scenes_total: int | None = None


_finish_statements: dict[str, Any] = {}


async def finish_running(
    conn: DbConnection, finishes: Sequence[Finish], *, now: datetime
) -> list[JobRow]:
    """Make running jobs terminal under their leases; the rows whose lease still held.

    On PostgreSQL a batch is one statement (round trips dominate there); elsewhere one
    guarded `transition` per job. Either way the same guard: status running, same token.
    """
    dialect_name = dialect.name(conn)
    if dialect_name not in _finish_statements:
        _finish_statements[dialect_name] = dialect.finish_running_statement(conn, jobs)
    statement = _finish_statements[dialect_name]
    if statement is None or len(finishes) == 1:
        rows = []
        for finish in finishes:
            values: dict[str, Any] = {
                "cost_micro": CAPPED_CHARGE,
                "result": finish.result,
                "error": None,
            }
            if finish.status is JobStatus.SUCCEEDED:
                values["progress"] = 100
            if finish.scenes_completed is not None:
                values["scenes_completed"] = finish.scenes_completed
            if finish.scenes_total is not None:
                values["scenes_total"] = finish.scenes_total
            row = await transition(
                conn,
                finish.job_id,
                finish.status,
                now=now,
                values=values,
                lease_token=finish.lease_token,
                params={"charge": finish.charge_micro},
            )
            if row is not None:
                rows.append(row)
        return rows
    result = await conn.execute(
        statement,
        {
            "f_ids": [f.job_id for f in finishes],
            "f_tokens": [f.lease_token for f in finishes],
            "f_statuses": [f.status.value for f in finishes],
            "f_charges": [f.charge_micro for f in finishes],
            "f_results": [orjson.dumps(f.result).decode() for f in finishes],
            "f_scenes_completed": [f.scenes_completed for f in finishes],
            "f_scenes_total": [f.scenes_total for f in finishes],
            "f_now": now,
        },
    )
    return list(result.all())
