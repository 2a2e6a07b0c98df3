"""Idempotency keys: the first request with a key owns it for 24 hours.

Ownership is taken with an INSERT against the (account, key) primary key, never a
check-then-insert, so concurrent duplicates cannot both create a job.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update

from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import idempotency_keys

KEY_TTL = timedelta(hours=24)


async def claim_key(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    key: str,
    fingerprint: str,
    job_id: uuid.UUID,
    response_status: int | None,
    now: datetime,
) -> Any | None:
    """Take the key for `job_id`. Returns None when taken, else the row that holds it."""
    values = {
        "account_id": account_id,
        "key": key,
        "fingerprint": fingerprint,
        "job_id": job_id,
        "response_status": response_status,
        "created_at": now,
        "expires_at": now + KEY_TTL,
    }
    inserted = await conn.execute(
        dialect.insert(conn, idempotency_keys)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["account_id", "key"])
        .returning(idempotency_keys.c.job_id)
    )
    if inserted.first() is not None:
        return None
    where = (idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == key)
    # An expired key is free again: take it over in place, still guarded.
    renewed = await conn.execute(
        update(idempotency_keys)
        .where(*where, idempotency_keys.c.expires_at <= now)
        .values(**values)
        .returning(idempotency_keys.c.job_id)
    )
    if renewed.first() is not None:
        return None
    return (await conn.execute(select(idempotency_keys).where(*where))).one()


async def record_response_status(
    conn: DbConnection, *, account_id: uuid.UUID, key: str, status: int
) -> None:
    await conn.execute(
        update(idempotency_keys)
        .where(
            idempotency_keys.c.account_id == account_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.response_status.is_(None),
        )
        .values(response_status=status)
    )


async def purge_expired(conn: DbConnection, *, now: datetime) -> int:
    result = await conn.execute(
        delete(idempotency_keys)
        .where(idempotency_keys.c.expires_at <= now)
        .returning(idempotency_keys.c.key)
    )
    return len(result.all())
