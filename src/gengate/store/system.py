"""Deployment-wide settings kept in the database (the link-signing secret)."""

from __future__ import annotations

from sqlalchemy import select

from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import system_settings


async def get_or_create(conn: DbConnection, key: str, value: str) -> str:
    """The stored value for `key`, storing `value` first if there is none (race-safe)."""
    await conn.execute(
        dialect.insert(conn, system_settings)
        .values(key=key, value=value)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    result = await conn.execute(select(system_settings.c.value).where(system_settings.c.key == key))
    return str(result.scalar_one())
