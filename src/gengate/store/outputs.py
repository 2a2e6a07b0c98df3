"""Output files of jobs (each one is an asset)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert

from gengate.store.database import DbConnection
from gengate.store.schema import outputs


async def insert_outputs(conn: DbConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(outputs), list(rows))
