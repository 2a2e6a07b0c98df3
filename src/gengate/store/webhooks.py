"""The webhook outbox and its delivery log.

A message is written in the job's terminal transaction and claimed by delivery loops
like a job is claimed by workers: the claim moves `next_attempt_at` past a lease and
bumps `lease_token` (PostgreSQL locks the candidates with `FOR UPDATE SKIP LOCKED`;
SQLite serialises writers with `BEGIN IMMEDIATE`), so each due message goes to one
deliverer. A deliverer that dies leaves a claim that simply comes due again when its
lease ends. The outcome of an attempt is written under the claim's token, so a claim
that was taken over (or reset by a manual retry) cannot overwrite the newer state; the
attempt itself is always logged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import jobs, webhook_deliveries, webhook_messages
from gengate.store.types import AnyRow, UTCDateTime

PENDING = "pending"

_INSERT_MESSAGE = insert(webhook_messages)
_INSERT_DELIVERY = insert(webhook_deliveries)


async def insert_message(
    conn: DbConnection,
    *,
    message_id: uuid.UUID,
    job_id: uuid.UUID,
    account_id: uuid.UUID,
    event_type: str,
    url: str,
    now: datetime,
) -> None:
    await conn.execute(
        _INSERT_MESSAGE,
        {
            "id": message_id,
            "job_id": job_id,
            "account_id": account_id,
            "event_type": event_type,
            "url": url,
            "status": PENDING,
            "attempts": 0,
            "schedule_step": 0,
            "next_attempt_at": now,
            "lease_token": 0,
            "lease_expires_at": None,
            "created_at": now,
            "updated_at": now,
        },
    )


_SET_JOB_WEBHOOK = (
    update(jobs)
    .where(jobs.c.id == bindparam("p_job_id"))
    .values(
        webhook_status=bindparam("p_status"),
        webhook_attempts=bindparam("p_attempts"),
        # The record changed, so its ETag must too.
        version=jobs.c.version + 1,
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(*jobs.c)
)


async def set_job_webhook(
    conn: DbConnection, job_id: uuid.UUID, *, status: str, attempts: int, now: datetime
) -> AnyRow | None:
    """Mirror a message's state into its job's `webhook` fields."""
    result = await conn.execute(
        _SET_JOB_WEBHOOK,
        {"p_job_id": job_id, "p_status": status, "p_attempts": attempts, "p_now": now},
    )
    return result.first()


_claims: dict[str, Any] = {}


def _claim_statement(conn: DbConnection) -> Any:
    dialect_name = dialect.name(conn)
    if dialect_name not in _claims:
        now = bindparam("c_now", type_=UTCDateTime())
        leased_until = bindparam("c_leased_until", type_=UTCDateTime())
        candidates = (
            select(webhook_messages.c.id)
            .where(webhook_messages.c.status == PENDING, webhook_messages.c.next_attempt_at <= now)
            .order_by(webhook_messages.c.next_attempt_at)
            .limit(bindparam("c_limit"))
        )
        # A CTE, as for job claims: `id IN (subquery)` may claim past LIMIT on PostgreSQL.
        picked = dialect.lock_for_claim(conn, candidates).cte("picked")
        _claims[dialect_name] = (
            update(webhook_messages)
            .where(webhook_messages.c.id == picked.c.id, webhook_messages.c.status == PENDING)
            .values(
                attempts=webhook_messages.c.attempts + 1,
                lease_token=webhook_messages.c.lease_token + 1,
                lease_expires_at=leased_until,
                # Not due again until the lease ends: a dead deliverer's claim comes back.
                next_attempt_at=leased_until,
                updated_at=now,
            )
            .returning(*webhook_messages.c)
        )
    return _claims[dialect_name]


async def claim_messages(
    conn: DbConnection, *, limit: int, lease_ttl: timedelta, now: datetime
) -> list[AnyRow]:
    """Claim up to `limit` due messages, oldest due first. Each claim counts an attempt."""
    result = await conn.execute(
        _claim_statement(conn),
        {"c_now": now, "c_leased_until": now + lease_ttl, "c_limit": limit},
    )
    return sorted(result.all(), key=lambda row: (row.next_attempt_at, row.id))


_NEXT_DUE = select(func.min(webhook_messages.c.next_attempt_at)).where(
    webhook_messages.c.status == PENDING
)


async def next_due_at(conn: DbConnection) -> datetime | None:
    """When the earliest pending message comes due (None when none is pending)."""
    value: datetime | None = (await conn.execute(_NEXT_DUE)).scalar()
    return value


_RECORD_OUTCOME = (
    update(webhook_messages)
    .where(
        webhook_messages.c.id == bindparam("p_id"),
        webhook_messages.c.lease_token == bindparam("p_token"),
        webhook_messages.c.status == PENDING,
    )
    .values(
        status=bindparam("p_status"),
        schedule_step=bindparam("p_step"),
        # The claim is spent: a late release or a second record under it changes nothing.
        lease_token=webhook_messages.c.lease_token + 1,
        next_attempt_at=bindparam("p_next", type_=UTCDateTime()),
        lease_expires_at=None,
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(*webhook_messages.c)
)


async def record_outcome(
    conn: DbConnection,
    message_id: uuid.UUID,
    *,
    lease_token: int,
    status: str,
    schedule_step: int,
    next_attempt_at: datetime,
    now: datetime,
) -> AnyRow | None:
    """Write an attempt's consequence under its claim; None when the claim was lost."""
    result = await conn.execute(
        _RECORD_OUTCOME,
        {
            "p_id": message_id,
            "p_token": lease_token,
            "p_status": status,
            "p_step": schedule_step,
            "p_next": next_attempt_at,
            "p_now": now,
        },
    )
    return result.first()


_RELEASE = (
    update(webhook_messages)
    .where(
        webhook_messages.c.id == bindparam("p_id"),
        webhook_messages.c.lease_token == bindparam("p_token"),
        webhook_messages.c.status == PENDING,
    )
    .values(
        # The interrupted attempt is not counted: it never finished.
        attempts=webhook_messages.c.attempts - 1,
        next_attempt_at=bindparam("p_now", type_=UTCDateTime()),
        lease_expires_at=None,
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(webhook_messages.c.id)
)


async def release_claim(
    conn: DbConnection, message_id: uuid.UUID, *, lease_token: int, now: datetime
) -> bool:
    """Give a claimed message back at once (shutdown), so another process takes it
    without waiting for the lease to end."""
    result = await conn.execute(
        _RELEASE, {"p_id": message_id, "p_token": lease_token, "p_now": now}
    )
    return result.first() is not None


async def insert_delivery(conn: DbConnection, values: dict[str, Any]) -> None:
    await conn.execute(_INSERT_DELIVERY, values)


_MESSAGE_OF_JOB = select(webhook_messages).where(webhook_messages.c.job_id == bindparam("p_job"))


async def message_for_job(conn: DbConnection, job_id: uuid.UUID) -> AnyRow | None:
    return (await conn.execute(_MESSAGE_OF_JOB, {"p_job": job_id})).first()


_DELIVERIES = (
    select(webhook_deliveries)
    .where(webhook_deliveries.c.message_id == bindparam("p_message"))
    .order_by(webhook_deliveries.c.id)
)


async def list_deliveries(conn: DbConnection, message_id: uuid.UUID) -> Sequence[AnyRow]:
    """Every attempt of a message, oldest first."""
    return (await conn.execute(_DELIVERIES, {"p_message": message_id})).all()


_RESET = (
    update(webhook_messages)
    .where(webhook_messages.c.id == bindparam("p_id"))
    .values(
        status=PENDING,
        schedule_step=0,
        next_attempt_at=bindparam("p_now", type_=UTCDateTime()),
        # A new token: an attempt still in flight may log itself but changes nothing.
        lease_token=webhook_messages.c.lease_token + 1,
        lease_expires_at=None,
        updated_at=bindparam("p_now", type_=UTCDateTime()),
    )
    .returning(*webhook_messages.c)
)


async def reset_message(conn: DbConnection, message_id: uuid.UUID, *, now: datetime) -> AnyRow:
    """Send a message again from the start of the schedule (same id, same event)."""
    return (await conn.execute(_RESET, {"p_id": message_id, "p_now": now})).one()
