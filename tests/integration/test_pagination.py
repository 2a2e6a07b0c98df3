"""Listing jobs: newest first, keyset cursors that stay correct under inserts, filters."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pytest

from gengate.domain.errors import InvalidRequest
from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import JobPage, SubmitRequest
from gengate.store.jobs import JobFilters, JobRow
from gengate.store.types import utcnow
from tests.conftest import Caller, new_caller
from tests.integration.support import MeteredProvider, add_model


class MusicProvider(MeteredProvider):
    """A model of another modality than the built-in image models."""

    modality: ClassVar[str] = "music"


async def submit(
    gw: Gateway, caller: Caller, prompt: str, *, model: str = "echo", **envelope: Any
) -> JobRow:
    request = SubmitRequest(model, {"prompt": prompt}, **envelope)
    return (await job_service.submit_job(gw, caller.principal, request)).job


async def page(
    gw: Gateway,
    caller: Caller,
    *,
    cursor: str | None = None,
    limit: int = 20,
    **filters: Any,
) -> JobPage:
    return await job_service.list_jobs(
        gw, caller.principal, JobFilters(**filters), cursor=cursor, limit=limit
    )


async def all_pages(gw: Gateway, caller: Caller, *, limit: int, **filters: Any) -> list[JobRow]:
    seen: list[JobRow] = []
    cursor: str | None = None
    while True:
        current = await page(gw, caller, cursor=cursor, limit=limit, **filters)
        seen += current.jobs
        if not current.has_more:
            assert current.cursor is None
            return seen
        cursor = current.cursor


async def tick(after: datetime) -> datetime:
    """Let the clock move a few milliseconds past `after`; a cut between the jobs before
    and after it. Jobs keep their creation time in whole milliseconds, so the cut lies
    mid-millisecond and the clock moves on to the next millisecond before returning."""
    await asyncio.sleep(max(0.0, (after - utcnow()).total_seconds()) + 0.003)
    now = utcnow()
    cut = now.replace(microsecond=now.microsecond // 1000 * 1000 + 500)
    await asyncio.sleep(0.002)
    return cut


async def test_pages_are_newest_first_and_cover_every_job_once_under_inserts(
    gateway: Gateway, caller: Caller
) -> None:
    original = [await submit(gateway, caller, f"job {i}") for i in range(23)]
    expected = [row.id for row in reversed(original)]
    seen: list[uuid.UUID] = []
    inserted: list[uuid.UUID] = []
    cursor: str | None = None
    pages = 0
    while True:
        current = await page(gateway, caller, cursor=cursor, limit=5)
        pages += 1
        assert len(current.jobs) <= 5
        seen += [row.id for row in current.jobs]
        if not current.has_more:
            assert current.cursor is None
            break
        assert current.cursor is not None
        # Cursors are URL-safe as they are.
        assert set(current.cursor) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        cursor = current.cursor
        # New jobs arrive between page fetches; they belong before the first page.
        inserted += [(await submit(gateway, caller, f"late {pages}.{i}")).id for i in range(3)]
    assert pages == 5
    assert seen == expected
    # A fresh listing starts with the late jobs, newest first.
    first = await page(gateway, caller, limit=len(inserted))
    assert [row.id for row in first.jobs] == list(reversed(inserted))
    created = [row.created_at for row in first.jobs]
    assert created == sorted(created, reverse=True)


async def test_limit_bounds_a_page_and_has_more_says_whether_more_follow(
    gateway: Gateway, caller: Caller
) -> None:
    empty = await page(gateway, caller)
    assert (empty.jobs, empty.has_more, empty.cursor) == ([], False, None)
    rows = [await submit(gateway, caller, f"job {i}") for i in range(4)]
    three = await page(gateway, caller, limit=3)
    assert [row.id for row in three.jobs] == [row.id for row in reversed(rows[1:])]
    assert three.has_more and three.cursor is not None
    rest = await page(gateway, caller, cursor=three.cursor, limit=3)
    assert ([row.id for row in rest.jobs], rest.has_more, rest.cursor) == (
        [rows[0].id],
        False,
        None,
    )
    exact = await page(gateway, caller, limit=4)
    assert (len(exact.jobs), exact.has_more, exact.cursor) == (4, False, None)
    one = await page(gateway, caller, limit=1)
    assert [row.id for row in one.jobs] == [rows[-1].id]


MALFORMED_CURSORS = [
    "not a cursor!",
    "%%%",
    "abc",
    base64.urlsafe_b64encode(b"\x01" * 15).decode(),
    base64.urlsafe_b64encode(b"\x01" * 17).decode(),
    "x" * 500,
]


async def test_a_malformed_cursor_is_an_invalid_request(gateway: Gateway, caller: Caller) -> None:
    await submit(gateway, caller, "one")
    for cursor in MALFORMED_CURSORS:
        with pytest.raises(InvalidRequest) as refused:
            await page(gateway, caller, cursor=cursor)
        assert refused.value.http_status == 400, cursor


async def test_filters_select_by_status_modality_model_and_tag(
    gateway: Gateway, caller: Caller
) -> None:
    add_model(gateway, "tune", MusicProvider())
    red = [{"key": "team", "value": "red"}]
    red_gold = [*red, {"key": "tier", "value": "gold"}]
    blue = [{"key": "team", "value": "blue"}]
    echo_red = await submit(gateway, caller, "a", tags=red)
    echo_red_gold = await submit(gateway, caller, "b", tags=red_gold)
    image_blue = await submit(gateway, caller, "c", model="local-image", tags=blue)
    music = await submit(gateway, caller, "d", model="tune")
    cancelled = await submit(gateway, caller, "e", tags=red)
    await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(cancelled))

    async def ids(**filters: Any) -> list[uuid.UUID]:
        # Through small pages, so filters and cursors are checked together.
        return [row.id for row in await all_pages(gateway, caller, limit=2, **filters)]

    assert await ids(status=JobStatus.CANCELLED) == [cancelled.id]
    assert await ids(status=JobStatus.QUEUED) == [
        music.id,
        image_blue.id,
        echo_red_gold.id,
        echo_red.id,
    ]
    assert await ids(status=JobStatus.SUCCEEDED) == []
    assert await ids(modality="music") == [music.id]
    assert await ids(modality="image") == [
        cancelled.id,
        image_blue.id,
        echo_red_gold.id,
        echo_red.id,
    ]
    assert await ids(model="local-image") == [image_blue.id]
    assert await ids(model="echo") == [cancelled.id, echo_red_gold.id, echo_red.id]
    assert await ids(tags=(("team", "red"),)) == [cancelled.id, echo_red_gold.id, echo_red.id]
    assert await ids(tags=(("team", "red"), ("tier", "gold"))) == [echo_red_gold.id]
    assert await ids(tags=(("team", "gold"),)) == []
    assert await ids(tags=(("tier", "red"),)) == []
    assert await ids(model="echo", status=JobStatus.QUEUED, tags=(("team", "red"),)) == [
        echo_red_gold.id,
        echo_red.id,
    ]


async def test_created_after_and_before_bound_the_listing(gateway: Gateway, caller: Caller) -> None:
    early = [await submit(gateway, caller, f"early {i}") for i in range(3)]
    first_cut = await tick(early[-1].created_at)
    middle = [await submit(gateway, caller, f"middle {i}") for i in range(3)]
    second_cut = await tick(middle[-1].created_at)
    late = [await submit(gateway, caller, f"late {i}") for i in range(2)]
    assert early[-1].created_at < first_cut < middle[0].created_at
    assert middle[-1].created_at < second_cut < late[0].created_at

    async def ids(**filters: Any) -> list[uuid.UUID]:
        return [row.id for row in await all_pages(gateway, caller, limit=2, **filters)]

    def newest_first(rows: list[JobRow]) -> list[uuid.UUID]:
        return [row.id for row in reversed(rows)]

    assert await ids(created_after=first_cut) == newest_first(middle + late)
    assert await ids(created_before=first_cut) == newest_first(early)
    assert await ids(created_after=first_cut, created_before=second_cut) == newest_first(middle)
    assert await ids(created_after=second_cut) == newest_first(late)
    assert await ids(created_before=second_cut, created_after=second_cut) == []
    assert await ids(created_after=utcnow() + timedelta(hours=1)) == []
    assert await ids(created_before=early[0].created_at - timedelta(hours=1)) == []


async def test_another_accounts_jobs_never_appear(gateway: Gateway, caller: Caller) -> None:
    other = await new_caller(gateway, 10, "other")
    mine = []
    theirs = []
    for index in range(6):
        mine.append(
            await submit(gateway, caller, f"mine {index}", tags=[{"key": "k", "value": "v"}])
        )
        theirs.append(
            await submit(gateway, other, f"theirs {index}", tags=[{"key": "k", "value": "v"}])
        )
    assert [row.id for row in await all_pages(gateway, caller, limit=4)] == [
        row.id for row in reversed(mine)
    ]
    assert [row.id for row in await all_pages(gateway, other, limit=4)] == [
        row.id for row in reversed(theirs)
    ]
    tagged = await all_pages(gateway, caller, limit=4, tags=(("k", "v"),), model="echo")
    assert {row.account_id for row in tagged} == {caller.principal.account_id}
    # A cursor taken from another account's listing reveals nothing of theirs.
    their_page = await page(gateway, other, limit=2)
    assert their_page.cursor is not None
    borrowed = await page(gateway, caller, cursor=their_page.cursor, limit=100)
    assert {row.account_id for row in borrowed.jobs} == {caller.principal.account_id}
