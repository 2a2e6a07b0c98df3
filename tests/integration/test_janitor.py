"""The janitor on SQLite and PostgreSQL: output files past their retention are deleted
in batches, their jobs' records show them expired (with a new ETag), uploads past
their expiry go too, and two sweepers at once mark each file once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from gengate.domain.ids import new_uuid
from gengate.providers.base import InvalidInputError
from gengate.services import assets as asset_service
from gengate.services import jobs as job_service
from gengate.services import uploads as upload_service
from gengate.services.gateway import Gateway
from gengate.services.records import etag, render_job
from gengate.store.schema import jobs, outputs, uploads
from gengate.worker.maintenance import Maintenance
from tests.conftest import Caller, new_caller
from tests.integration.support import open_gateway, wait_until
from tests.integration.test_assets import echo, links_of, run_jobs, wav_bytes


async def age_outputs(gw: Gateway, *, by: timedelta = timedelta(seconds=1)) -> None:
    """Make every output's retention expiry lie in the past."""
    async with gw.db.transaction() as conn:
        await conn.execute(update(outputs).values(expires_at=gw.clock() - by))


async def test_expired_outputs_are_deleted_and_their_jobs_show_it(
    gateway: Gateway, caller: Caller
) -> None:
    old, fresh = await run_jobs(gateway, caller, [echo("old"), echo("fresh")])
    old_key = old.result["outputs"][0]["storage_key"]
    fresh_key = fresh.result["outputs"][0]["storage_key"]
    links = links_of(gateway)
    old_tag = etag(old, links)
    async with gateway.db.transaction() as conn:
        await conn.execute(
            update(outputs)
            .where(outputs.c.job_id == old.id)
            .values(expires_at=gateway.clock() - timedelta(seconds=1))
        )

    assert await Maintenance(gateway).delete_expired_files() == 1

    assert not (gateway.settings.files_dir / old_key).exists()
    assert (gateway.settings.files_dir / fresh_key).is_file()  # not due yet
    after = await job_service.get_job(gateway, caller.principal, old.id.hex)
    assert after.version == old.version + 1
    assert etag(after, links) != old_tag
    record = render_job(after, links)
    assert record["status"] == "succeeded"  # expiry changes the files, not the status
    assert record["result"]["url"] is None
    assert record["result"]["outputs"][0]["expired"] is True
    assert record["result"]["outputs"][0]["url"] is None
    assert record["result"]["outputs"][0]["expires_at"] is None
    assert record["asset_ids"] == [old.result["outputs"][0]["asset_id"]]
    untouched = await job_service.get_job(gateway, caller.principal, fresh.id.hex)
    assert untouched.version == fresh.version
    assert render_job(untouched, links)["result"]["outputs"][0]["expired"] is False

    asset = await asset_service.get_asset(
        gateway, caller.principal, old.result["outputs"][0]["asset_id"]
    )
    assert asset.deleted_at is not None
    # A second sweep finds nothing more to do.
    assert await Maintenance(gateway).delete_expired_files() == 0
    again = await job_service.get_job(gateway, caller.principal, old.id.hex)
    assert again.version == after.version


async def test_retention_comes_from_the_settings(database_url: str, tmp_path: Path) -> None:
    """`retention_days` sets each output's expiry; the running maintenance loop
    deletes the file once it has passed (here a fraction of a second)."""
    async with open_gateway(database_url, tmp_path / "data", retention_days=0.5 / 86_400) as gw:
        caller = await new_caller(gw)
        (job,) = await run_jobs(gw, caller, [echo("short-lived")])
        key = job.result["outputs"][0]["storage_key"]
        row = await asset_service.get_asset(
            gw, caller.principal, job.result["outputs"][0]["asset_id"]
        )
        assert (row.expires_at - row.created_at).total_seconds() == 0.5

        async def marked_expired() -> bool:
            row = await job_service.get_job(gw, caller.principal, job.id.hex)
            return bool(row.result["outputs"][0].get("expired"))

        maintenance = Maintenance(gw)
        maintenance.start()
        try:
            await wait_until(marked_expired, timeout_s=10, what="the janitor to expire the file")
        finally:
            await maintenance.stop()
        assert not (gw.settings.files_dir / key).exists()


async def test_the_sweep_works_through_every_batch(gateway: Gateway, caller: Caller) -> None:
    (job,) = await run_jobs(gateway, caller, [echo("many files")])
    now = gateway.clock()
    rows = []
    for position in range(1, 2 * asset_service.SWEEP_BATCH + 31):
        key = f"{job.id.hex}/extra-{position}.bin"
        await gateway.storage.put(key, b"x", "application/octet-stream")
        rows.append(
            {
                "id": new_uuid(),
                "job_id": job.id,
                "account_id": job.account_id,
                "position": position,
                "storage_key": key,
                "content_type": "application/octet-stream",
                "bytes": 1,
                "created_at": now,
                "expires_at": now - timedelta(seconds=1),
            }
        )
    async with gateway.db.transaction() as conn:
        await conn.execute(insert(outputs), rows)

    assert await Maintenance(gateway).delete_expired_files() == len(rows)

    assert not any((gateway.settings.files_dir / row["storage_key"]).exists() for row in rows)
    async with gateway.db.read() as conn:
        live = await conn.execute(select(outputs.c.id).where(outputs.c.deleted_at.is_(None)))
        assert [r.id for r in live.all()] == [uuid.UUID(job.result["outputs"][0]["asset_id"][4:])]
        version = (await conn.execute(select(jobs.c.version).where(jobs.c.id == job.id))).scalar()
    # One change per batch that touched the job (its own output is not due).
    assert version == job.version + 3


async def test_two_sweepers_at_once_mark_each_file_once(database_url: str, tmp_path: Path) -> None:
    async with (
        open_gateway(database_url, tmp_path / "data") as first,
        open_gateway(database_url, tmp_path / "data") as second,
    ):
        caller = await new_caller(first)
        finished = await run_jobs(first, caller, [echo(f"race {n}") for n in range(6)])
        await age_outputs(first)

        await asyncio.gather(
            Maintenance(first).delete_expired_files(), Maintenance(second).delete_expired_files()
        )

        for job in finished:
            after = await job_service.get_job(first, caller.principal, job.id.hex)
            assert after.version == job.version + 1, "each job's result rewritten once"
            assert after.result["outputs"][0]["expired"] is True
            assert not (first.settings.files_dir / job.result["outputs"][0]["storage_key"]).exists()


async def test_expired_uploads_are_deleted(gateway: Gateway, caller: Caller) -> None:
    keep = await upload_service.create_upload(gateway, caller.principal, wav_bytes(), filename="a")
    drop = await upload_service.create_upload(gateway, caller.principal, wav_bytes(), filename="b")
    links = links_of(gateway)
    drop_url = upload_service.render_upload(drop, links)["url"]
    assert (drop.expires_at - drop.created_at).total_seconds() == gateway.settings.upload_ttl_s
    async with gateway.db.transaction() as conn:
        await conn.execute(
            update(uploads)
            .where(uploads.c.id == drop.id)
            .values(expires_at=gateway.clock() - timedelta(seconds=1))
        )

    assert await Maintenance(gateway).delete_expired_files() == 1

    assert not (gateway.settings.files_dir / drop.storage_key).exists()
    assert (gateway.settings.files_dir / keep.storage_key).is_file()
    gone = await upload_service.get_upload(gateway, caller.principal, drop.id.hex)
    record = upload_service.render_upload(gone, links)
    assert record["expired"] is True and record["url"] is None
    kept = await upload_service.get_upload(gateway, caller.principal, keep.id.hex)
    assert kept.deleted_at is None
    with pytest.raises(InvalidInputError, match="no longer exists"):
        await upload_service.open_upload(gateway, drop_url)
