"""Assets on SQLite and PostgreSQL: listing newest first with tag, modality and job
filters and keyset pages, the asset record, isolation between accounts, and deleting
an asset (the file goes, the asset and its job's record show it expired)."""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from gengate.domain.errors import NotFound
from gengate.domain.ids import format_id
from gengate.domain.money import Price, PriceUnit
from gengate.domain.states import JobStatus
from gengate.providers.base import GenerationContext, GenerationResult, Provider
from gengate.services import assets as asset_service
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.services.records import LinkBuilder, etag, render_job
from gengate.store.assets import AssetFilters
from gengate.store.jobs import JobRow
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller, new_caller
from tests.integration.support import add_model

BASE_URL = "http://gateway.test"


def wav_bytes(seconds: float = 0.25, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x10\x00" * int(seconds * rate))
    return buffer.getvalue()


class ToneProvider(Provider):
    """A test music model: one short WAV file per job."""

    modality: ClassVar[str] = "music"
    description: ClassVar[str] = "test model that returns a short WAV"
    price: ClassVar[Price] = Price(PriceUnit.RUN, Decimal("0.1"))
    default_concurrency: ClassVar[int | None] = 4

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {"prompt": {"type": "string"}},
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return 1

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        await ctx.save_output(wav_bytes(), "audio/wav", duration_sec=0.25)
        return GenerationResult(units=1)


def links_of(gw: Gateway) -> LinkBuilder:
    return LinkBuilder.create(
        gw.signer, BASE_URL, now=gw.clock(), lifetime_s=gw.settings.link_ttl_s
    )


async def run_jobs(gw: Gateway, caller: Caller, requests: list[SubmitRequest]) -> list[JobRow]:
    """Submit these jobs, run them all to the end, and return them finished."""
    submitted = [(await job_service.submit_job(gw, caller.principal, r)).job for r in requests]
    runtime = WorkerRuntime(gw, [gw.catalog.get(m) for m in sorted({r.model_id for r in requests})])
    await runtime.start()
    try:
        await runtime.drain(timeout_s=30)
    finally:
        await runtime.stop()
    finished = [await job_service.get_job(gw, caller.principal, row.id.hex) for row in submitted]
    assert all(row.status == JobStatus.SUCCEEDED for row in finished), finished
    return finished


def echo(prompt: str, **tags: str) -> SubmitRequest:
    return SubmitRequest(
        "echo", {"prompt": prompt}, tags=[{"key": k, "value": v} for k, v in tags.items()]
    )


def asset_id_of(job: JobRow, index: int = 0) -> str:
    return str(job.result["outputs"][index]["asset_id"])


async def listed(
    gw: Gateway, caller: Caller, filters: AssetFilters | None = None, limit: int = 100
) -> list[str]:
    page = await asset_service.list_assets(
        gw, caller.principal, filters or AssetFilters(), cursor=None, limit=limit
    )
    return [format_id("out", row.id) for row in page.assets]


async def test_assets_are_listed_newest_first_with_filters(
    gateway: Gateway, caller: Caller
) -> None:
    add_model(gateway, "test-tone", ToneProvider())
    jobs = await run_jobs(
        gateway,
        caller,
        [
            echo("first", project="apollo", team="red"),
            echo("second", project="gemini"),
            SubmitRequest(
                "test-tone", {"prompt": "hum"}, tags=[{"key": "project", "value": "apollo"}]
            ),
            echo("third", project="apollo", team="blue"),
        ],
    )
    ids = [asset_id_of(job) for job in jobs]
    # Outputs are numbered as they are saved; jobs may run in any order.
    assert await listed(gateway, caller) == sorted(ids, reverse=True)

    apollo = await listed(gateway, caller, AssetFilters(tags=(("project", "apollo"),)))
    assert sorted(apollo) == sorted([ids[0], ids[2], ids[3]])
    both = AssetFilters(tags=(("project", "apollo"), ("team", "red")))
    assert await listed(gateway, caller, both) == [ids[0]]
    assert await listed(gateway, caller, AssetFilters(tags=(("project", "mercury"),))) == []
    assert await listed(gateway, caller, AssetFilters(modality="music")) == [ids[2]]
    assert sorted(await listed(gateway, caller, AssetFilters(modality="image"))) == sorted(
        [ids[0], ids[1], ids[3]]
    )
    assert await listed(gateway, caller, AssetFilters(job_id=jobs[1].id)) == [ids[1]]


async def test_pages_follow_the_cursor_and_are_stable_under_inserts(
    gateway: Gateway, caller: Caller
) -> None:
    await run_jobs(gateway, caller, [echo(f"page {n}") for n in range(5)])
    everything = await listed(gateway, caller)
    first = await asset_service.list_assets(
        gateway, caller.principal, AssetFilters(), cursor=None, limit=2
    )
    assert first.has_more and first.cursor is not None
    # New assets arrive between two pages: they are newer, so the next page is unchanged.
    await run_jobs(gateway, caller, [echo("late arrival")])
    seen = [format_id("out", row.id) for row in first.assets]
    cursor: str | None = first.cursor
    while cursor is not None:
        page = await asset_service.list_assets(
            gateway, caller.principal, AssetFilters(), cursor=cursor, limit=2
        )
        seen += [format_id("out", row.id) for row in page.assets]
        cursor = page.cursor
        assert (cursor is not None) == page.has_more
    assert seen == everything


async def test_the_asset_record_carries_the_file_and_its_job(
    gateway: Gateway, caller: Caller
) -> None:
    add_model(gateway, "test-tone", ToneProvider())
    image_job, tone_job = await run_jobs(
        gateway,
        caller,
        [
            echo("metadata", project="apollo"),
            SubmitRequest("test-tone", {"prompt": "hum"}),
        ],
    )
    links = links_of(gateway)
    row = await asset_service.get_asset(gateway, caller.principal, asset_id_of(image_job))
    asset = asset_service.render_asset(row, links)
    output = render_job(image_job, links)["result"]["outputs"][0]
    assert asset["object"] == "asset"
    assert asset["id"] == output["asset_id"]
    assert asset["job_id"] == format_id("job", image_job.id)
    assert (asset["model"], asset["modality"], asset["position"]) == ("echo", "image", 0)
    assert asset["url"] == output["url"]
    assert asset["url"].startswith(f"{BASE_URL}/v1/files/")
    assert asset["url_expires_at"] == output["expires_at"]
    assert (asset["content_type"], asset["width"], asset["height"]) == ("image/png", 64, 64)
    assert asset["bytes"] == output["bytes"] > 0
    assert asset["tags"] == [{"key": "project", "value": "apollo"}]
    assert asset["expired"] is False and asset["deleted_at"] is None
    retention_s = gateway.settings.retention_days * 86_400
    assert abs((row.expires_at - row.created_at).total_seconds() - retention_s) < 1

    # The bare UUID works as an id too, as for jobs.
    tone = await asset_service.get_asset(
        gateway, caller.principal, uuid.UUID(asset_id_of(tone_job)[4:]).hex
    )
    rendered = asset_service.render_asset(tone, links)
    assert (rendered["content_type"], rendered["duration_sec"]) == ("audio/wav", 0.25)
    assert rendered["modality"] == "music"


async def test_another_accounts_assets_are_not_found(gateway: Gateway, caller: Caller) -> None:
    (job,) = await run_jobs(gateway, caller, [echo("mine")])
    stranger = await new_caller(gateway, name="stranger")
    asset_id = asset_id_of(job)
    with pytest.raises(NotFound):
        await asset_service.get_asset(gateway, stranger.principal, asset_id)
    with pytest.raises(NotFound):
        await asset_service.delete_asset(gateway, stranger.principal, asset_id)
    assert await listed(gateway, stranger) == []
    for malformed in ("out_nothex", "job_" + asset_id[4:] + "x", "", "../etc"):
        with pytest.raises(NotFound):
            await asset_service.get_asset(gateway, caller.principal, malformed)
    with pytest.raises(NotFound):
        await asset_service.get_asset(gateway, caller.principal, format_id("out", uuid.uuid4()))
    # The stranger's attempt changed nothing.
    row = await asset_service.get_asset(gateway, caller.principal, asset_id)
    assert row.deleted_at is None
    assert gateway.storage.local_path(row.storage_key) is not None


async def test_deleting_an_asset_expires_it_everywhere(gateway: Gateway, caller: Caller) -> None:
    (job,) = await run_jobs(gateway, caller, [echo("to delete")])
    asset_id = asset_id_of(job)
    key = job.result["outputs"][0]["storage_key"]
    links = links_of(gateway)
    before_tag = etag(job, links)
    assert gateway.storage.local_path(key) is not None

    deleted = await asset_service.delete_asset(gateway, caller.principal, asset_id)
    assert gateway.storage.local_path(key) is None
    assert not (gateway.settings.files_dir / key).exists()
    record = asset_service.render_asset(deleted, links)
    assert record["expired"] is True
    assert record["url"] is None and record["url_expires_at"] is None
    assert record["deleted_at"] is not None

    after = await job_service.get_job(gateway, caller.principal, job.id.hex)
    assert after.version == job.version + 1
    assert etag(after, links) != before_tag
    result = render_job(after, links)["result"]
    assert result["url"] is None
    assert result["outputs"][0]["expired"] is True
    assert result["outputs"][0]["url"] is None
    assert result["outputs"][0]["asset_id"] == asset_id

    # Deleting again answers the same record and changes nothing.
    again = await asset_service.delete_asset(gateway, caller.principal, asset_id)
    assert asset_service.render_asset(again, links) == record
    unchanged = await job_service.get_job(gateway, caller.principal, job.id.hex)
    assert unchanged.version == after.version
    # Still listed, as expired.
    assert await listed(gateway, caller) == [asset_id]
