"""Output files of jobs (each one is an asset)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from gengate.store.database import DbConnection
from gengate.store.schema import outputs


async def insert_outputs(conn: DbConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(outputs), list(rows))


async def due_for_deletion(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[Any]:
    result = await conn.execute(
        select(outputs.c.id, outputs.c.job_id, outputs.c.storage_key)
        .where(outputs.c.deleted_at.is_(None), outputs.c.expires_at <= now)
        .limit(limit)
    )
    return result.all()


async def mark_deleted(conn: DbConnection, output_ids: Sequence[uuid.UUID], now: datetime) -> None:
    await conn.execute(
        update(outputs).where(outputs.c.id.in_(list(output_ids))).values(deleted_at=now)
    )
