"""Assets: every output file of a job, with the job's tags. List, read (with a fresh
link), delete, and the retention sweep that deletes files past `retention_days`.

An asset whose file is gone, deleted by the sweep or by `DELETE /v1/assets/{id}`,
stays readable as a record with `expired: true` and no link, like the output entry
in its job's record. Deleting is therefore idempotent: deleting it again answers the
same record.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from gengate.domain.cursors import decode_cursor, encode_cursor
from gengate.domain.errors import NotFound
from gengate.domain.ids import format_id, require_id
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.services.records import LinkBuilder, iso
from gengate.storage.signing import expires_at_iso
from gengate.store import assets as asset_store
from gengate.store.assets import AssetFilters
from gengate.store.types import AnyRow

logger = logging.getLogger("gengate.maintenance")
SWEEP_BATCH = 100


def render_asset(row: AnyRow, links: LinkBuilder) -> dict[str, Any]:
    """The asset record: the output's file and metadata, its job, and the job's tags."""
    expired = row.deleted_at is not None
    return {
        "object": "asset",
        "id": format_id("out", row.id),
        "job_id": format_id("job", row.job_id),
        "model": row.model,
        "modality": row.modality,
        "position": row.position,
        "url": None if expired else links.url(row.storage_key),
        "url_expires_at": None if expired else expires_at_iso(links.expires),
        "content_type": row.content_type,
        "bytes": row.bytes,
        "width": row.width,
        "height": row.height,
        "duration_sec": row.duration_sec,
        "tags": row.tags,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "expired": expired,
        "deleted_at": iso(row.deleted_at),
    }


@dataclass(frozen=True, slots=True)
class AssetPage:
    assets: list[AnyRow]
    has_more: bool
    cursor: str | None


async def list_assets(
    gw: Gateway, principal: Principal, filters: AssetFilters, *, cursor: str | None, limit: int
) -> AssetPage:
    before = decode_cursor(cursor) if cursor else None
    async with gw.db.read() as conn:
        rows = list(
            await asset_store.list_assets(
                conn,
                account_id=principal.account_id,
                filters=filters,
                before=before,
                limit=limit + 1,
            )
        )
    has_more = len(rows) > limit
    rows = rows[:limit]
    return AssetPage(rows, has_more, encode_cursor(rows[-1].id) if has_more and rows else None)


async def get_asset(gw: Gateway, principal: Principal, asset_id: str) -> AnyRow:
    async with gw.db.read() as conn:
        row = await asset_store.get_asset(
            conn, require_id("out", asset_id, "asset"), account_id=principal.account_id
        )
    if row is None:
        raise NotFound(f"No asset {asset_id[:80]!r}.")
    return row


async def delete_asset(gw: Gateway, principal: Principal, asset_id: str) -> AnyRow:
    """Delete the asset's file; its record (and its job's) then show it expired."""
    row = await get_asset(gw, principal, asset_id)
    if row.deleted_at is not None:
        return row
    # The file goes first: if marking fails, a retry deletes nothing twice, while the
    # other order could leave a file that no record would ever delete.
    await gw.storage.delete(row.storage_key)
    async with gw.db.transaction() as conn:
        await asset_store.mark_outputs_deleted(conn, [(row.id, row.job_id)], now=gw.clock())
    return await get_asset(gw, principal, asset_id)


async def expire_outputs(gw: Gateway) -> int:
    """One batch of the retention sweep: delete the files of outputs past their expiry
    and mark them expired. Returns how many files it deleted; a file that cannot be
    deleted now is left for a later sweep."""
    now = gw.clock()
    async with gw.db.read() as conn:
        due = await asset_store.outputs_due(conn, now=now, limit=SWEEP_BATCH)
    deleted: list[tuple[uuid.UUID, uuid.UUID]] = []
    for row in due:
        try:
            await gw.storage.delete(row.storage_key)
        except Exception:
            logger.warning("could not delete expired file %s", row.storage_key, exc_info=True)
            continue
        deleted.append((row.id, row.job_id))
    if deleted:
        async with gw.db.transaction() as conn:
            marked = await asset_store.mark_outputs_deleted(conn, deleted, now=now)
        if marked:
            logger.info("deleted %d expired output files", len(marked))
    return len(deleted)
