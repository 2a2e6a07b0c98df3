"""Every piece of SQL whose text differs between SQLite and PostgreSQL.

The rest of the store is dialect-neutral SQLAlchemy Core; when a statement needs
a dialect's own syntax (upserts, GREATEST, row locking for claims), it comes from
here, so the differences can be read side by side.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, Table, exists, func, literal, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite

from gengate.store.database import DbConnection


def name(conn: DbConnection) -> str:
    return conn.dialect.name


def insert(conn: DbConnection, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT (both dialects spell it the same way)."""
    if name(conn) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def greatest(conn: DbConnection, *values: Any) -> ColumnElement[Any]:
    """The largest of several values: GREATEST() on PostgreSQL, scalar max() on SQLite."""
    if name(conn) == "postgresql":
        return func.greatest(*values)
    return func.max(*values)


def lock_for_claim(conn: DbConnection, query: Select[Any]) -> Select[Any]:
    """Make a candidate query safe for concurrent claimers.

    PostgreSQL: lock the chosen rows and skip rows other workers hold, so claimers
    never wait for or collide with each other. SQLite: writers are serialised by
    `BEGIN IMMEDIATE`, so the plain query is already exclusive.
    """
    if name(conn) == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def take_turns(conn: DbConnection, key: str) -> Any | None:
    """A statement after which transactions holding the same `key` run one at a time
    until commit, so a count they act on stays true (a model's running jobs for the
    fleet-wide cap, its queued jobs for the queue depth).

    PostgreSQL: a transaction-scoped advisory lock on the key. SQLite: none needed
    (`BEGIN IMMEDIATE` already serialises writers).
    """
    if name(conn) == "postgresql":
        return select(func.pg_advisory_xact_lock(func.hashtext("gengate:" + key)))
    return None


def has_tag(conn: DbConnection, tags_column: Any, key: str, value: str) -> ColumnElement[bool]:
    """True when a JSON array of `{"key", "value"}` objects holds this pair."""
    if name(conn) == "postgresql":
        # JSONB containment (`@>`); the JSON column type itself has no containment.
        return type_coerce(tags_column, postgresql.JSONB).contains([{"key": key, "value": value}])
    each = func.json_each(tags_column).table_valued("value").alias("tag")
    return (
        exists(literal(1))
        .select_from(each)
        .where(
            func.json_extract(each.c.value, "$.key") == key,
            func.json_extract(each.c.value, "$.value") == value,
        )
    )


def finish_running_statement(conn: DbConnection, jobs: Table) -> Any | None:
    """PostgreSQL: one UPDATE that makes many running jobs terminal, each under its own
    lease, from parallel arrays (`unnest` zips them). None elsewhere: SQLite writes in
    this process without round trips, so one statement per job costs little there."""
    if name(conn) != "postgresql":
        return None
    from sqlalchemy import BigInteger, Integer, String, Text, Uuid, bindparam, case, cast, update
    from sqlalchemy.dialects.postgresql import ARRAY, JSONB

    def column(param: str, element: Any) -> Any:
        return func.unnest(bindparam(param, type_=ARRAY(element)))

    batch = select(
        column("f_ids", Uuid()).label("id"),
        column("f_tokens", BigInteger()).label("token"),
        column("f_statuses", String()).label("status"),
        column("f_charges", BigInteger()).label("charge"),
        cast(column("f_results", Text()), JSONB).label("result"),
        column("f_scenes_completed", Integer()).label("scenes_completed"),
        column("f_scenes_total", Integer()).label("scenes_total"),
    ).subquery("finished")
    now = bindparam("f_now", type_=jobs.c.completed_at.type)
    return (
        update(jobs)
        .where(
            jobs.c.id == batch.c.id,
            jobs.c.lease_token == batch.c.token,
            jobs.c.status == "running",
        )
        .values(
            status=batch.c.status,
            cost_micro=func.least(batch.c.charge, jobs.c.reserved_micro),
            result=batch.c.result,
            error=None,
            progress=case((batch.c.status == "succeeded", 100), else_=jobs.c.progress),
            # The last scene counts a run reported (its progress writes are throttled).
            scenes_completed=func.coalesce(batch.c.scenes_completed, jobs.c.scenes_completed),
            scenes_total=func.coalesce(batch.c.scenes_total, jobs.c.scenes_total),
            version=jobs.c.version + 1,
            lease_expires_at=None,
            worker_id=None,
            completed_at=now,
            updated_at=now,
        )
        .returning(*jobs.c)
    )
