"""Uploads: input files an account stores (`POST /v1/uploads`) to pass as a media URL
(`image_url`, `audio_url`), their expiry, and reading a link of ours back from storage.

The type of an upload is sniffed from its bytes (the declared type is not trusted), and
only the media types the built-in models take are accepted. Uploads belong to their
account (another account's id is not found) and are deleted `upload_ttl_s` after they
were made, by the maintenance sweep.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import puremagic

from gengate.domain.errors import InvalidInput, InvalidRequest, NotFound
from gengate.domain.ids import format_id, new_uuid, require_id
from gengate.providers.base import InvalidInputError
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.services.records import LinkBuilder, iso
from gengate.storage.signing import expires_at_iso
from gengate.store import assets as asset_store
from gengate.store.types import AnyRow

logger = logging.getLogger("gengate.maintenance")
SWEEP_BATCH = 100

#: Accepted media types and the extension their files are stored with.
UPLOAD_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
}
# Names the sniffer may give to the accepted types.
_TYPE_ALIASES = {
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
}


def sniff_content_type(data: bytes) -> str | None:
    """The media type the bytes really are, when it is one we accept."""
    if not data:
        return None
    try:
        sniffed = puremagic.from_string(data, mime=True)
    except puremagic.PureError:
        return None
    content_type = _TYPE_ALIASES.get(sniffed, sniffed)
    return content_type if content_type in UPLOAD_TYPES else None


def render_upload(row: AnyRow, links: LinkBuilder) -> dict[str, Any]:
    expired = row.deleted_at is not None
    return {
        "object": "upload",
        "id": format_id("upl", row.id),
        "url": None if expired else links.url(row.storage_key),
        "url_expires_at": None if expired else expires_at_iso(links.expires),
        "content_type": row.content_type,
        "bytes": row.bytes,
        "filename": row.filename,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "expired": expired,
    }


def _clean_filename(filename: str | None) -> str | None:
    """The client's file name, for display only: its last path part, printable, short."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or None


async def create_upload(
    gw: Gateway, principal: Principal, data: bytes, *, filename: str | None
) -> AnyRow:
    """Store one input file of the account. `data` may be one byte longer than the
    limit (the caller reads no more), which tells an oversized file."""
    limit = gw.settings.max_upload_bytes
    if len(data) > limit:
        raise InvalidRequest(
            f"The file is larger than {limit} bytes.", details={"max_upload_bytes": limit}
        )
    if not data:
        raise InvalidInput("The file is empty.")
    content_type = sniff_content_type(data)
    if content_type is None:
        raise InvalidInput(
            "The file is not of an accepted type (judged by its content, not its name "
            "or declared type).",
            details={"accepted": sorted(UPLOAD_TYPES)},
        )
    upload_id = new_uuid()
    key = f"uploads/{upload_id.hex}.{UPLOAD_TYPES[content_type]}"
    now = gw.clock()
    await gw.storage.put(
        key,
        data,
        content_type,
        filename=f"{format_id('upl', upload_id)}.{UPLOAD_TYPES[content_type]}",
    )
    try:
        async with gw.db.transaction() as conn:
            return await asset_store.insert_upload(
                conn,
                {
                    "id": upload_id,
                    "account_id": principal.account_id,
                    "storage_key": key,
                    "content_type": content_type,
                    "bytes": len(data),
                    "filename": _clean_filename(filename),
                    "created_at": now,
                    "expires_at": now + timedelta(seconds=gw.settings.upload_ttl_s),
                },
            )
    except Exception:
        await gw.storage.delete(key)
        raise


async def get_upload(gw: Gateway, principal: Principal, upload_id: str) -> AnyRow:
    async with gw.db.read() as conn:
        row = await asset_store.get_upload(
            conn, require_id("upl", upload_id, "upload"), account_id=principal.account_id
        )
    if row is None:
        raise NotFound(f"No upload {upload_id[:80]!r}.")
    return row


async def delete_upload(gw: Gateway, principal: Principal, upload_id: str) -> AnyRow:
    """Delete the upload's file now; its record then shows it expired (idempotent)."""
    row = await get_upload(gw, principal, upload_id)
    if row.deleted_at is None:
        await gw.storage.delete(row.storage_key)
        async with gw.db.transaction() as conn:
            await asset_store.mark_uploads_deleted(conn, [row.id], now=gw.clock())
        row = await get_upload(gw, principal, upload_id)
    return row


async def expire_uploads(gw: Gateway) -> int:
    """One batch of the upload sweep: delete expired uploads' files and mark them."""
    now = gw.clock()
    async with gw.db.read() as conn:
        due = await asset_store.uploads_due(conn, now=now, limit=SWEEP_BATCH)
    deleted: list[uuid.UUID] = []
    for row in due:
        try:
            await gw.storage.delete(row.storage_key)
        except Exception:
            logger.warning("could not delete expired upload %s", row.storage_key, exc_info=True)
            continue
        deleted.append(row.id)
    if deleted:
        async with gw.db.transaction() as conn:
            await asset_store.mark_uploads_deleted(conn, deleted, now=now)
    return len(deleted)


async def open_upload(gw: Gateway, url: str) -> tuple[bytes, str] | None:
    """The bytes and media type behind `url` when it is a file link this deployment
    made (an upload's, or a job output's), read from storage without HTTP; None for
    any other URL, which the caller fetches itself under the address guard.

    Raises `InvalidInputError` (a job fails with `invalid_input`) when the link is ours
    but expired, or its file was deleted."""
    link = gw.signer.identify(url, gw.clock())
    if link is None:
        return None
    if link.expired:
        raise InvalidInputError("The file link has expired; upload the file again.")
    async with gw.db.read() as conn:
        stored = await asset_store.stored_file(conn, link.key)
    data = await gw.storage.read(link.key) if stored and not stored.deleted else None
    if stored is None or data is None:
        raise InvalidInputError("The file behind the link no longer exists.")
    return data, stored.content_type
