"""Idempotency keys: one job per (account, key, body), whatever the retries."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from gengate.domain.canonical import request_fingerprint
from gengate.domain.errors import Conflict, InsufficientCredits, Overloaded
from gengate.services import accounts as account_service
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import Submission, SubmitRequest
from gengate.store.schema import idempotency_keys
from gengate.store.types import utcnow
from tests.conftest import Caller, new_caller
from tests.integration.support import balances, job_rows, ledger_rows, open_gateway

ECHO_MICRO = 1000


def keyed(
    key: str, model_input: dict[str, Any], *, sync: bool = False, model: str = "echo"
) -> SubmitRequest:
    """A submit as the HTTP layer builds it for `POST /v1/models/{model}/run`."""
    envelope = {"input": model_input, "sync": sync}
    return SubmitRequest(
        model,
        model_input,
        idempotency_key=key,
        fingerprint=request_fingerprint(f"run:{model}", envelope),
        response_status=None if sync else 202,
    )


async def submit(gw: Gateway, caller: Caller, request: SubmitRequest) -> Submission:
    return await job_service.submit_job(gw, caller.principal, request)


async def reserves(gw: Gateway, caller: Caller) -> list[int]:
    return [
        r.amount_micro
        for r in await ledger_rows(gw, caller.principal.account_id)
        if r.kind == "reserve"
    ]


async def test_same_key_and_body_replays_the_job_without_reserving_again(
    gateway: Gateway, caller: Caller
) -> None:
    first = await submit(gateway, caller, keyed("order-1", {"prompt": "hi"}))
    assert not first.replayed
    again = await submit(gateway, caller, keyed("order-1", {"prompt": "hi"}))
    assert again.replayed
    assert again.job.id == first.job.id
    assert again.replay_status == 202
    assert len(await job_rows(gateway, caller.principal.account_id)) == 1
    assert await reserves(gateway, caller) == [ECHO_MICRO]
    assert (await balances(gateway, caller.principal.account_id)).reserved_micro == ECHO_MICRO


async def test_a_replay_carries_the_jobs_current_record(gateway: Gateway, caller: Caller) -> None:
    first = await submit(gateway, caller, keyed("order-1", {"prompt": "hi"}))
    await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(first.job))
    again = await submit(gateway, caller, keyed("order-1", {"prompt": "hi"}))
    assert (again.replayed, again.job.id, again.job.status) == (True, first.job.id, "cancelled")
    # Replaying a key charges nothing new and reserves nothing again.
    money = await balances(gateway, caller.principal.account_id)
    assert money.reserved_micro == 0
    assert await reserves(gateway, caller) == [ECHO_MICRO]


async def test_a_sync_submit_replays_the_status_it_answered_with(
    gateway: Gateway, caller: Caller
) -> None:
    first = await submit(gateway, caller, keyed("sync-1", {"prompt": "hi"}, sync=True))
    # While the first request still waits, a replay has no status to replay yet.
    pending = await submit(gateway, caller, keyed("sync-1", {"prompt": "hi"}, sync=True))
    assert (pending.replayed, pending.replay_status) == (True, None)
    await job_service.record_answer(gateway, caller.principal, "sync-1", 200)
    # The first answer is the one kept.
    await job_service.record_answer(gateway, caller.principal, "sync-1", 202)
    again = await submit(gateway, caller, keyed("sync-1", {"prompt": "hi"}, sync=True))
    assert (again.replayed, again.job.id, again.replay_status) == (True, first.job.id, 200)


async def test_same_key_with_another_body_is_a_conflict(gateway: Gateway, caller: Caller) -> None:
    first = await submit(gateway, caller, keyed("order-1", {"prompt": "hi"}))
    for other in (
        keyed("order-1", {"prompt": "hello"}),
        keyed("order-1", {"prompt": "hi"}, sync=True),
        keyed("order-1", {"prompt": "hi"}, model="local-image"),
    ):
        with pytest.raises(Conflict) as refused:
            await submit(gateway, caller, other)
        assert refused.value.http_status == 409
    assert [row.id for row in await job_rows(gateway, caller.principal.account_id)] == [
        first.job.id
    ]
    assert await reserves(gateway, caller) == [ECHO_MICRO]


async def test_keys_are_scoped_to_the_account(gateway: Gateway, caller: Caller) -> None:
    other = await new_caller(gateway, 10, "other")
    mine = await submit(gateway, caller, keyed("shared-key", {"prompt": "hi"}))
    theirs = await submit(gateway, other, keyed("shared-key", {"prompt": "hi"}))
    assert not theirs.replayed
    assert theirs.job.id != mine.job.id
    assert theirs.job.account_id == other.principal.account_id
    # And another body under the same key is theirs to use, not a conflict with mine.
    third = await new_caller(gateway, 10, "third")
    assert not (await submit(gateway, third, keyed("shared-key", {"prompt": "x"}))).replayed
    assert (
        await submit(gateway, caller, keyed("shared-key", {"prompt": "hi"}))
    ).job.id == mine.job.id


async def test_concurrent_duplicates_create_one_job_and_one_reservation(
    gateway: Gateway, caller: Caller
) -> None:
    submissions = await asyncio.gather(
        *(submit(gateway, caller, keyed("burst", {"prompt": "hi"})) for _ in range(20))
    )
    assert len({s.job.id for s in submissions}) == 1
    assert sum(not s.replayed for s in submissions) == 1
    assert all(s.replay_status == 202 for s in submissions if s.replayed)
    assert len(await job_rows(gateway, caller.principal.account_id)) == 1
    assert await reserves(gateway, caller) == [ECHO_MICRO]
    assert (await balances(gateway, caller.principal.account_id)).reserved_micro == ECHO_MICRO


async def test_concurrent_duplicates_with_different_bodies_leave_one_winner(
    gateway: Gateway, caller: Caller
) -> None:
    async def attempt(index: int) -> Submission | Conflict:
        try:
            return await submit(gateway, caller, keyed("race", {"prompt": f"body {index % 2}"}))
        except Conflict as conflict:
            return conflict

    outcomes = await asyncio.gather(*(attempt(index) for index in range(10)))
    accepted = [o for o in outcomes if isinstance(o, Submission)]
    assert len({s.job.id for s in accepted}) == 1
    assert len(accepted) == 5  # exactly the requests with the winner's body
    assert len(await job_rows(gateway, caller.principal.account_id)) == 1


async def test_an_expired_key_is_free_again(gateway: Gateway, caller: Caller) -> None:
    first = await submit(gateway, caller, keyed("daily", {"prompt": "hi"}))
    async with gateway.db.transaction() as conn:
        await conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.account_id == caller.principal.account_id,
                idempotency_keys.c.key == "daily",
            )
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # Free for any body: no replay and no conflict.
    fresh = await submit(gateway, caller, keyed("daily", {"prompt": "another day"}))
    assert not fresh.replayed
    assert fresh.job.id != first.job.id
    assert await reserves(gateway, caller) == [ECHO_MICRO, ECHO_MICRO]
    # The key now belongs to the new job, for a fresh 24 hours.
    again = await submit(gateway, caller, keyed("daily", {"prompt": "another day"}))
    assert (again.replayed, again.job.id) == (True, fresh.job.id)
    with pytest.raises(Conflict):
        await submit(gateway, caller, keyed("daily", {"prompt": "hi"}))


async def test_a_replay_is_answered_even_when_a_new_submit_would_be_refused(
    database_url: str, tmp_path: Path
) -> None:
    async with open_gateway(
        database_url, tmp_path / "data", models={"echo": {"queue_depth": 1}}
    ) as gw:
        caller = await new_caller(gw, Decimal("0.1"))  # exactly one echo run
        first = await submit(gw, caller, keyed("only", {"prompt": "hi"}))
        # The account has no credit left and the model's queue is full ...
        with pytest.raises(InsufficientCredits):
            await submit(gw, caller, keyed("second", {"prompt": "hi"}, model="local-image"))
        rich = await new_caller(gw, 10, "rich")
        with pytest.raises(Overloaded):
            await submit(gw, rich, keyed("second", {"prompt": "hi"}))
        # ... yet a retry of the accepted request still gets its job.
        again = await submit(gw, caller, keyed("only", {"prompt": "hi"}))
        assert (again.replayed, again.job.id) == (True, first.job.id)


async def test_a_refused_submit_does_not_hold_its_key(gateway: Gateway) -> None:
    caller = await new_caller(gateway, 0)
    with pytest.raises(InsufficientCredits):
        await submit(gateway, caller, keyed("after-top-up", {"prompt": "hi"}))
    await account_service.credit_account(gateway.db, caller.account_id, Decimal(1), utcnow())
    accepted = await submit(gateway, caller, keyed("after-top-up", {"prompt": "hi"}))
    assert not accepted.replayed
    assert accepted.job.status == "queued"
