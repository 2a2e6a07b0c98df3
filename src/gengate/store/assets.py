"""Assets (the `outputs` rows, seen with their job's model, modality and tags) and
uploads: listing, lookups by id and by storage key, and the writes that mark files
deleted.

When an output's file is deleted (by the retention sweep or `DELETE /v1/assets/{id}`),
its job's stored result flags that output `expired` and the job's `version` goes up,
so the job record and its ETag change. Two sweepers, or a sweep and a delete, may do
this at once: the job rows are locked first (PostgreSQL; SQLite has one writer), so
each rewrite of a result sees every earlier one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select, update

from gengate.domain.ids import format_id
from gengate.store import dialect
from gengate.store.database import DbConnection
from gengate.store.schema import jobs, outputs, uploads
from gengate.store.types import AnyRow

# -- assets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssetFilters:
    modality: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    job_id: uuid.UUID | None = None


def _assets() -> Select[Any]:
    return select(outputs, jobs.c.model, jobs.c.modality, jobs.c.tags).join(
        jobs, jobs.c.id == outputs.c.job_id
    )


async def list_assets(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    filters: AssetFilters,
    before: uuid.UUID | None,
    limit: int,
) -> Sequence[AnyRow]:
    """Newest first by id (time-ordered), keyset-paginated: stable under inserts."""
    query = _assets().where(outputs.c.account_id == account_id)
    if before is not None:
        query = query.where(outputs.c.id < before)
    if filters.job_id is not None:
        query = query.where(outputs.c.job_id == filters.job_id)
    if filters.modality is not None:
        query = query.where(jobs.c.modality == filters.modality)
    for key, value in filters.tags:
        query = query.where(dialect.has_tag(conn, jobs.c.tags, key, value))
    result = await conn.execute(query.order_by(outputs.c.id.desc()).limit(limit))
    return result.all()


async def get_asset(
    conn: DbConnection, asset_id: uuid.UUID, *, account_id: uuid.UUID
) -> AnyRow | None:
    query = _assets().where(outputs.c.id == asset_id, outputs.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def outputs_due(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[AnyRow]:
    """Live outputs past their retention expiry, oldest expiry first."""
    result = await conn.execute(
        select(outputs.c.id, outputs.c.job_id, outputs.c.storage_key)
        .where(outputs.c.deleted_at.is_(None), outputs.c.expires_at <= now)
        .order_by(outputs.c.expires_at)
        .limit(limit)
    )
    return result.all()


async def mark_outputs_deleted(
    conn: DbConnection, deleted: Iterable[tuple[uuid.UUID, uuid.UUID]], *, now: datetime
) -> list[uuid.UUID]:
    """Mark (output id, job id) pairs deleted and flag them expired in their jobs'
    results, bumping each job's version. Returns the outputs this call marked (an
    output already marked is left alone)."""
    pairs = dict(deleted)
    if not pairs:
        return []
    job_ids = sorted(set(pairs.values()))
    # Lock the jobs in a fixed order, so concurrent sweeps and deletes never deadlock.
    await conn.execute(
        select(jobs.c.id).where(jobs.c.id.in_(job_ids)).order_by(jobs.c.id).with_for_update()
    )
    result = await conn.execute(
        update(outputs)
        .where(outputs.c.id.in_(list(pairs)), outputs.c.deleted_at.is_(None))
        .values(deleted_at=now)
        .returning(outputs.c.id, outputs.c.job_id)
    )
    marked = result.all()
    for job_id in sorted({row.job_id for row in marked}):
        await _flag_expired_outputs(conn, job_id, now=now)
    return [row.id for row in marked]


async def _flag_expired_outputs(conn: DbConnection, job_id: uuid.UUID, *, now: datetime) -> None:
    gone = await conn.execute(
        select(outputs.c.id).where(outputs.c.job_id == job_id, outputs.c.deleted_at.is_not(None))
    )
    gone_ids = {format_id("out", row.id) for row in gone.all()}
    job = (await conn.execute(select(jobs.c.result).where(jobs.c.id == job_id))).first()
    if job is None or job.result is None:
        return
    stored: list[dict[str, Any]] = job.result.get("outputs", [])
    flagged = [
        {**output, "expired": True} if output.get("asset_id") in gone_ids else output
        for output in stored
    ]
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            result={**job.result, "outputs": flagged},
            version=jobs.c.version + 1,
            updated_at=now,
        )
    )


# -- files by storage key ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What a download needs to know about a stored file."""

    content_type: str
    filename: str
    deleted: bool


def _extension(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1] if "." in name else "bin"


async def stored_file(conn: DbConnection, key: str) -> StoredFile | None:
    """The output or upload stored under `key`, or None when no record names it."""
    output = (
        await conn.execute(
            select(
                outputs.c.job_id, outputs.c.position, outputs.c.content_type, outputs.c.deleted_at
            ).where(outputs.c.storage_key == key)
        )
    ).first()
    if output is not None:
        return StoredFile(
            content_type=output.content_type,
            filename=f"{format_id('job', output.job_id)}-{output.position}.{_extension(key)}",
            deleted=output.deleted_at is not None,
        )
    upload = (
        await conn.execute(
            select(uploads.c.id, uploads.c.content_type, uploads.c.deleted_at).where(
                uploads.c.storage_key == key
            )
        )
    ).first()
    if upload is not None:
        return StoredFile(
            content_type=upload.content_type,
            filename=f"{format_id('upl', upload.id)}.{_extension(key)}",
            deleted=upload.deleted_at is not None,
        )
    return None


# -- uploads ----------------------------------------------------------------------------


async def insert_upload(conn: DbConnection, values: dict[str, Any]) -> AnyRow:
    return (await conn.execute(insert(uploads).returning(*uploads.c), values)).one()


async def get_upload(
    conn: DbConnection, upload_id: uuid.UUID, *, account_id: uuid.UUID
) -> AnyRow | None:
    query = select(uploads).where(uploads.c.id == upload_id, uploads.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def uploads_due(conn: DbConnection, *, now: datetime, limit: int) -> Sequence[AnyRow]:
    """Live uploads past their expiry, oldest expiry first."""
    result = await conn.execute(
        select(uploads.c.id, uploads.c.storage_key)
        .where(uploads.c.deleted_at.is_(None), uploads.c.expires_at <= now)
        .order_by(uploads.c.expires_at)
        .limit(limit)
    )
    return result.all()


async def mark_uploads_deleted(
    conn: DbConnection, upload_ids: Sequence[uuid.UUID], *, now: datetime
) -> list[uuid.UUID]:
    if not upload_ids:
        return []
    result = await conn.execute(
        update(uploads)
        .where(uploads.c.id.in_(list(upload_ids)), uploads.c.deleted_at.is_(None))
        .values(deleted_at=now)
        .returning(uploads.c.id)
    )
    return [row.id for row in result.all()]
