"""Money: reservations at submit, 402s, settlement on the terminal transition, and the
ledger invariant under 200 concurrent submits with mixed outcomes."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from gengate.domain.errors import Conflict, InsufficientCredits, InvalidRequest, NotFound
from gengate.domain.ids import format_id
from gengate.domain.states import JobStatus
from gengate.services import accounts as account_service
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.store.schema import accounts, jobs, ledger_entries
from gengate.store.types import AnyRow, utcnow
from gengate.worker.maintenance import Maintenance
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller, new_caller
from tests.integration.support import (
    MeteredProvider,
    add_model,
    balances,
    count_active_jobs,
    job_rows,
    ledger_kinds,
    ledger_rows,
    wait_until,
)

ECHO_MICRO = 1000  # 0.1 credit per run
IMAGE_MICRO = 10_000  # 1 credit per image


async def submit(gw: Gateway, caller: Caller, model: str, model_input: dict[str, Any]) -> AnyRow:
    submission = await job_service.submit_job(
        gw, caller.principal, SubmitRequest(model, model_input)
    )
    return submission.job


async def run_until_terminal(gw: Gateway, model_ids: list[str], *rows: AnyRow) -> list[AnyRow]:
    """Run a worker for `model_ids` until every given job is terminal; the fresh rows."""
    runtime = WorkerRuntime(gw, [gw.catalog.get(model_id) for model_id in model_ids])
    await runtime.start()
    try:
        return [await job_service.wait_for_job(gw, row, 20) for row in rows]
    finally:
        await runtime.stop()


# -- reservations ---------------------------------------------------------------------


async def test_submit_reserves_the_models_price_for_the_input(gateway: Gateway) -> None:
    caller = await new_caller(gateway, 10)  # 100,000 micro
    echo = await submit(gateway, caller, "echo", {"prompt": "hi"})
    images = await submit(gateway, caller, "local-image", {"prompt": "hi", "num_images": 3})
    assert (echo.reserved_micro, images.reserved_micro) == (ECHO_MICRO, 3 * IMAGE_MICRO)
    money = await balances(gateway, caller.principal.account_id)
    assert money.balance_micro == 100_000
    assert money.reserved_micro == ECHO_MICRO + 3 * IMAGE_MICRO
    assert money.available_micro == 100_000 - ECHO_MICRO - 3 * IMAGE_MICRO
    view = await account_service.get_account(gateway.db, caller.principal.account_id)
    assert view["reserved_micro"] == money.reserved_micro
    assert view["available_micro"] == money.available_micro
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert ledger_kinds(ledger, echo.id) == {"reserve": [ECHO_MICRO]}
    assert ledger_kinds(ledger, images.id) == {"reserve": [3 * IMAGE_MICRO]}


async def test_submit_is_refused_402_when_reservations_eat_the_balance(gateway: Gateway) -> None:
    caller = await new_caller(gateway, Decimal("0.25"))  # 2,500 micro
    await submit(gateway, caller, "echo", {"prompt": "one"})
    await submit(gateway, caller, "echo", {"prompt": "two"})
    with pytest.raises(InsufficientCredits) as refused:
        await submit(gateway, caller, "echo", {"prompt": "three"})
    assert refused.value.http_status == 402
    assert refused.value.details == {"required_micro": ECHO_MICRO, "available_micro": 500}
    with pytest.raises(InsufficientCredits):
        await submit(gateway, caller, "local-image", {"prompt": "big"})
    money = await balances(gateway, caller.principal.account_id)
    assert (money.balance_micro, money.reserved_micro) == (2500, 2 * ECHO_MICRO)
    assert len(await job_rows(gateway, caller.principal.account_id)) == 2
    kinds = Counter(row.kind for row in await ledger_rows(gateway, caller.principal.account_id))
    assert kinds == {"credit": 1, "reserve": 2}


async def test_an_available_balance_equal_to_the_price_is_enough(gateway: Gateway) -> None:
    broke = await new_caller(gateway, 0)
    with pytest.raises(InsufficientCredits):
        await submit(gateway, broke, "echo", {"prompt": "hi"})
    assert await ledger_rows(gateway, broke.principal.account_id) == []
    caller = await new_caller(gateway, Decimal("0.1"))  # exactly one echo run
    job = await submit(gateway, caller, "echo", {"prompt": "hi"})
    assert job.reserved_micro == ECHO_MICRO
    assert (await balances(gateway, caller.principal.account_id)).available_micro == 0
    with pytest.raises(InsufficientCredits):
        await submit(gateway, caller, "echo", {"prompt": "again"})


# -- settlement -----------------------------------------------------------------------


async def test_success_charges_the_cost_and_releases_the_reservation(
    gateway: Gateway, caller: Caller
) -> None:
    before = await balances(gateway, caller.principal.account_id)
    queued = await submit(gateway, caller, "echo", {"prompt": "hi"})
    [done] = await run_until_terminal(gateway, ["echo"], queued)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.cost_micro, done.reserved_micro) == (ECHO_MICRO, ECHO_MICRO)
    after = await balances(gateway, caller.principal.account_id)
    assert after.balance_micro == before.balance_micro - ECHO_MICRO
    assert after.reserved_micro == 0
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert ledger_kinds(ledger, done.id) == {
        "reserve": [ECHO_MICRO],
        "release": [ECHO_MICRO],
        "charge": [ECHO_MICRO],
    }
    settled = [row for row in ledger if row.job_id == done.id and row.kind != "reserve"]
    # Written with the terminal transition, not after it.
    assert {row.created_at for row in settled} == {done.completed_at}
    charge = next(row for row in settled if row.kind == "charge")
    assert (charge.balance_after_micro, charge.reserved_after_micro) == (after.balance_micro, 0)


async def test_failure_and_cancellation_charge_nothing(gateway: Gateway, caller: Caller) -> None:
    before = await balances(gateway, caller.principal.account_id)
    failing = await submit(gateway, caller, "echo", {"prompt": "hi", "fail": True})
    [failed] = await run_until_terminal(gateway, ["echo"], failing)
    assert failed.status == JobStatus.FAILED
    assert failed.error["code"] == "provider_error"
    queued = await submit(gateway, caller, "echo", {"prompt": "hi"})
    cancelled = await job_service.cancel_job(
        gateway, caller.principal, job_service.public_job_id(queued)
    )
    assert cancelled.status == JobStatus.CANCELLED
    with pytest.raises(Conflict):
        await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(queued))
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    for job in (failed, cancelled):
        assert job.cost_micro == 0
        assert ledger_kinds(ledger, job.id) == {"reserve": [ECHO_MICRO], "release": [ECHO_MICRO]}
    after = await balances(gateway, caller.principal.account_id)
    assert (after.balance_micro, after.reserved_micro) == (before.balance_micro, 0)


async def test_cancelling_a_running_job_charges_nothing(gateway: Gateway, caller: Caller) -> None:
    before = await balances(gateway, caller.principal.account_id)
    runtime = WorkerRuntime(gateway, [gateway.catalog.get("echo")])
    await runtime.start()
    try:
        queued = await submit(gateway, caller, "echo", {"prompt": "hi", "latency_ms": 30_000})

        async def running() -> bool:
            row = await job_service.get_job(
                gateway, caller.principal, job_service.public_job_id(queued)
            )
            return bool(row.status == JobStatus.RUNNING)

        await wait_until(running, timeout_s=10, what="the job to start")
        cancelled = await job_service.cancel_job(
            gateway, caller.principal, job_service.public_job_id(queued)
        )
        assert cancelled.status == JobStatus.CANCELLED
        # The worker drops the interrupted run; it must not settle the job again.
        await runtime.drain(timeout_s=10)
    finally:
        await runtime.stop()
    job = await job_service.get_job(gateway, caller.principal, job_service.public_job_id(queued))
    assert (job.status, job.cost_micro) == (JobStatus.CANCELLED, 0)
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert ledger_kinds(ledger, job.id) == {"reserve": [ECHO_MICRO], "release": [ECHO_MICRO]}
    after = await balances(gateway, caller.principal.account_id)
    assert (after.balance_micro, after.reserved_micro) == (before.balance_micro, 0)


async def test_charge_is_the_reported_usage_below_the_reservation(
    gateway: Gateway, caller: Caller
) -> None:
    add_model(gateway, "metered", MeteredProvider())
    full = await submit(gateway, caller, "metered", {"prompt": "a", "estimate": 4, "report": 1.5})
    partial = await submit(
        gateway, caller, "metered", {"prompt": "b", "estimate": 3, "report": 2, "partial": True}
    )
    done, done_partial = await run_until_terminal(gateway, ["metered"], full, partial)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.reserved_micro, done.cost_micro) == (4 * IMAGE_MICRO, 15_000)
    # A partial job is charged for what it produced.
    assert done_partial.status == JobStatus.PARTIAL
    assert (done_partial.reserved_micro, done_partial.cost_micro) == (3 * IMAGE_MICRO, 20_000)
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert ledger_kinds(ledger, done.id) == {
        "reserve": [4 * IMAGE_MICRO],
        "release": [4 * IMAGE_MICRO],
        "charge": [15_000],
    }
    assert ledger_kinds(ledger, done_partial.id) == {
        "reserve": [3 * IMAGE_MICRO],
        "release": [3 * IMAGE_MICRO],
        "charge": [20_000],
    }
    money = await balances(gateway, caller.principal.account_id)
    assert (money.balance_micro, money.reserved_micro) == (10_000_000 - 35_000, 0)


async def test_usage_above_the_reservation_is_capped_and_logged(
    gateway: Gateway, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    add_model(gateway, "metered", MeteredProvider())
    before = await balances(gateway, caller.principal.account_id)
    queued = await submit(gateway, caller, "metered", {"prompt": "hi", "estimate": 1, "report": 7})
    with caplog.at_level(logging.WARNING, logger="gengate"):
        [done] = await run_until_terminal(gateway, ["metered"], queued)
    assert done.status == JobStatus.SUCCEEDED
    assert (done.reserved_micro, done.cost_micro) == (IMAGE_MICRO, IMAGE_MICRO)
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert ledger_kinds(ledger, done.id) == {
        "reserve": [IMAGE_MICRO],
        "release": [IMAGE_MICRO],
        "charge": [IMAGE_MICRO],
    }
    after = await balances(gateway, caller.principal.account_id)
    assert (after.balance_micro, after.reserved_micro) == (before.balance_micro - IMAGE_MICRO, 0)
    capped = [r for r in caplog.records if getattr(r, "job_id", None) == format_id("job", done.id)]
    assert any(
        r.levelno == logging.WARNING and getattr(r, "cost_micro", 0) == 70_000 for r in capped
    )


async def test_an_over_reporting_provider_cannot_overdraw_an_exact_balance(
    gateway: Gateway,
) -> None:
    add_model(gateway, "metered", MeteredProvider())
    caller = await new_caller(gateway, 1)  # exactly one unit
    queued = await submit(gateway, caller, "metered", {"prompt": "hi", "estimate": 1, "report": 50})
    [done] = await run_until_terminal(gateway, ["metered"], queued)
    assert done.cost_micro == IMAGE_MICRO
    money = await balances(gateway, caller.principal.account_id)
    assert (money.balance_micro, money.reserved_micro) == (0, 0)


async def test_a_negative_usage_report_is_not_a_credit(gateway: Gateway, caller: Caller) -> None:
    add_model(gateway, "metered", MeteredProvider())
    before = await balances(gateway, caller.principal.account_id)
    queued = await submit(gateway, caller, "metered", {"prompt": "hi", "report": -2})
    [done] = await run_until_terminal(gateway, ["metered"], queued)
    assert JobStatus(done.status).is_terminal
    assert 0 <= done.cost_micro <= done.reserved_micro
    after = await balances(gateway, caller.principal.account_id)
    assert after.reserved_micro == 0
    assert after.balance_micro == before.balance_micro - done.cost_micro <= before.balance_micro
    ledger = await ledger_rows(gateway, caller.principal.account_id)
    assert all(row.amount_micro >= 0 for row in ledger), ledger


async def test_a_usage_report_that_cannot_be_priced_does_not_strand_the_job(
    gateway: Gateway, caller: Caller
) -> None:
    """Whatever goes wrong recording an outcome, the job must still end and its
    reservation come back (here through the lapsed lease and the reaper)."""
    add_model(gateway, "metered", MeteredProvider(), max_attempts=1, retry_base_s=0)
    before = await balances(gateway, caller.principal.account_id)
    queued = await submit(gateway, caller, "metered", {"prompt": "hi", "report": "nan"})
    runtime = WorkerRuntime(gateway, [gateway.catalog.get("metered")])
    maintenance = Maintenance(gateway)
    await runtime.start()
    maintenance.start()
    try:
        # A lease lapses within lease_ttl_s (1.5 s here) and the reaper sweeps every 0.1 s.
        done = await job_service.wait_for_job(gateway, queued, 10)
    finally:
        await maintenance.stop()
        await runtime.stop()
    assert JobStatus(done.status).is_terminal, done.status
    assert 0 <= done.cost_micro <= done.reserved_micro
    after = await balances(gateway, caller.principal.account_id)
    assert (after.balance_micro, after.reserved_micro) == (
        before.balance_micro - done.cost_micro,
        0,
    )


# -- operator credit ------------------------------------------------------------------


async def test_a_debit_below_the_reserved_amount_is_refused(gateway: Gateway) -> None:
    caller = await new_caller(gateway, 10)  # 100,000 micro
    for _ in range(2):
        await submit(gateway, caller, "local-image", {"prompt": "hi", "num_images": 4})
    now = utcnow()
    with pytest.raises(InvalidRequest):
        await account_service.credit_account(gateway.db, caller.account_id, Decimal(-5), now)
    money = await balances(gateway, caller.principal.account_id)
    assert (money.balance_micro, money.reserved_micro) == (100_000, 80_000)
    assert [row.kind for row in await ledger_rows(gateway, caller.principal.account_id)] == [
        "credit",
        "reserve",
        "reserve",
    ]
    # Down to exactly the reserved amount is allowed; available is then zero.
    debited = await account_service.credit_account(gateway.db, caller.account_id, Decimal(-2), now)
    assert (debited["balance_micro"], debited["available_micro"]) == (80_000, 0)
    with pytest.raises(InsufficientCredits):
        await submit(gateway, caller, "echo", {"prompt": "hi"})
    topped = await account_service.credit_account(
        gateway.db, caller.account_id, Decimal("0.5"), now
    )
    assert topped["available_micro"] == 5_000
    with pytest.raises(NotFound):
        await account_service.credit_account(
            gateway.db, format_id("acct", uuid.uuid4()), Decimal(1), now
        )


# -- consistency seen from outside -------------------------------------------------------


async def test_a_reader_never_sees_a_status_change_without_its_settlement(
    gateway: Gateway,
) -> None:
    """Sampled with single statements while a worker settles jobs: the account's
    reservations always equal its active jobs' and its balance always reflects
    exactly the charges of its terminal jobs."""
    caller = await new_caller(gateway, 10)
    account_id = caller.principal.account_id
    initial = 100_000
    rows = [
        await submit(gateway, caller, "echo", {"prompt": f"p{i}", "fail": i % 3 == 0})
        for i in range(40)
    ]
    active = ["queued", "running"]
    snapshot = select(
        accounts.c.balance_micro,
        accounts.c.reserved_micro,
        select(func.coalesce(func.sum(jobs.c.reserved_micro), 0))
        .where(jobs.c.account_id == account_id, jobs.c.status.in_(active))
        .scalar_subquery()
        .label("active_reserved"),
        select(func.coalesce(func.sum(jobs.c.cost_micro), 0))
        .where(jobs.c.account_id == account_id, jobs.c.status.not_in(active))
        .scalar_subquery()
        .label("charged"),
        select(func.count())
        .where(jobs.c.account_id == account_id, jobs.c.status.in_(active))
        .scalar_subquery()
        .label("active"),
        select(func.coalesce(func.sum(ledger_entries.c.amount_micro), 0))
        .where(ledger_entries.c.account_id == account_id, ledger_entries.c.kind == "charge")
        .scalar_subquery()
        .label("ledger_charged"),
    ).where(accounts.c.id == account_id)
    samples: list[Any] = []
    runtime = WorkerRuntime(gateway, [gateway.catalog.get("echo")], concurrency=4)
    await runtime.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            async with gateway.db.read() as conn:
                sample = (await conn.execute(snapshot)).one()
            samples.append(sample)
            if sample.active == 0:
                break
            assert loop.time() < deadline, "the jobs did not finish in time"
            # Reads may complete without suspending; let the worker move between samples.
            await asyncio.sleep(0.001)
    finally:
        await runtime.stop()
    for sample in samples:
        assert sample.reserved_micro == sample.active_reserved, sample
        assert sample.balance_micro == initial - sample.charged == initial - sample.ledger_charged
    assert any(0 < s.active < len(rows) for s in samples), "no sample caught the worker mid-way"
    final = samples[-1]
    assert (final.balance_micro, final.reserved_micro) == (initial - 26 * ECHO_MICRO, 0)


# -- the invariant ----------------------------------------------------------------------


async def test_ledger_invariant_holds_after_200_concurrent_mixed_submits(
    gateway: Gateway,
) -> None:
    """200 concurrent submits from 3 accounts: successes, failures, jobs cancelled while
    queued or running, and 402s for the account with few credits; then the ledger of
    every account must add up."""
    rich_a = await new_caller(gateway, 1000, "rich-a")
    rich_b = await new_caller(gateway, 1000, "rich-b")
    poor = await new_caller(gateway, 2, "poor")  # 20,000 micro: at most 20 echo runs
    credited = {
        rich_a.principal.account_id: 10_000_000,
        rich_b.principal.account_id: 10_000_000,
        poor.principal.account_id: 20_000,
    }
    inputs: dict[str, dict[str, Any]] = {
        "ok": {"latency_ms": 0},
        "slow": {"latency_ms": 30},
        "fail": {"fail": True},
        # Never finishes by itself: it ends by being cancelled, while queued or running.
        "cancel": {"latency_ms": 60_000},
    }
    plan: list[tuple[Caller, str]] = [
        (rich, ("ok", "fail", "cancel", "slow")[i % 4])
        for rich in (rich_a, rich_b)
        for i in range(80)
    ]
    plan += [(poor, "ok")] * 40
    random.Random(7).shuffle(plan)
    assert len(plan) == 200

    async def attempt(index: int, caller: Caller, kind: str) -> tuple[Caller, str, Any]:
        model_input = {"prompt": f"{kind} {index}", **inputs[kind]}
        try:
            submission = await job_service.submit_job(
                gateway, caller.principal, SubmitRequest("echo", model_input)
            )
        except InsufficientCredits as refused:
            return caller, kind, refused
        return caller, kind, submission.job

    runtime = WorkerRuntime(gateway, [gateway.catalog.get("echo")], concurrency=16)
    await runtime.start()
    try:
        outcomes = await asyncio.gather(
            *(attempt(index, caller, kind) for index, (caller, kind) in enumerate(plan))
        )
        admitted = {
            row.id: (caller, kind)
            for caller, kind, row in outcomes
            if not isinstance(row, InsufficientCredits)
        }
        to_cancel = [job_id for job_id, (_, kind) in admitted.items() if kind == "cancel"]

        async def some_cancel_target_runs() -> bool:
            targets = set(to_cancel)
            rows = await job_rows(gateway)
            return any(r.status == "running" for r in rows if r.id in targets)

        await wait_until(some_cancel_target_runs, timeout_s=15, what="a long job to start")
        cancelled = await asyncio.gather(
            *(
                job_service.cancel_job(
                    gateway, admitted[job_id][0].principal, format_id("job", job_id)
                )
                for job_id in to_cancel
            )
        )
        assert all(row.status == JobStatus.CANCELLED for row in cancelled)

        async def all_terminal() -> bool:
            return await count_active_jobs(gateway) == 0

        await wait_until(all_terminal, timeout_s=30, what="every job to finish")
    finally:
        await runtime.stop()

    refused = Counter(c.account_id for c, _, r in outcomes if isinstance(r, InsufficientCredits))
    assert set(refused) == {poor.account_id}
    # Every admitted poor job is charged in full, so no more than 20 can ever be admitted.
    assert refused[poor.account_id] >= 20
    expected = {"ok": "succeeded", "slow": "succeeded", "fail": "failed", "cancel": "cancelled"}
    final = {row.id: row for row in await job_rows(gateway)}
    assert set(final) == set(admitted)
    for job_id, (_, kind) in admitted.items():
        assert final[job_id].status == expected[kind], (kind, final[job_id])
    cancelled_while = Counter(final[job_id].started_at is None for job_id in to_cancel)
    assert cancelled_while[True] > 0 and cancelled_while[False] > 0, cancelled_while

    for account_id, credited_micro in credited.items():
        await assert_books_balance(gateway, account_id, credited_micro, final, admitted)


async def assert_books_balance(
    gw: Gateway,
    account_id: uuid.UUID,
    credited_micro: int,
    final: dict[uuid.UUID, AnyRow],
    admitted: dict[uuid.UUID, tuple[Caller, str]],
) -> None:
    money = await balances(gw, account_id)
    ledger = await ledger_rows(gw, account_id)
    own_jobs = {job_id: row for job_id, row in final.items() if row.account_id == account_id}
    totals: Counter[str] = Counter()
    for entry in ledger:
        totals[entry.kind] += entry.amount_micro
        assert entry.balance_after_micro >= entry.reserved_after_micro >= 0, entry
    assert totals["credit"] == credited_micro
    assert totals["credit"] - totals["charge"] == money.balance_micro
    assert money.reserved_micro == 0
    assert money.balance_micro >= 0
    assert totals["reserve"] == totals["release"]
    # Refused submits leave no ledger entry; every entry of a job is for an admitted job.
    assert {e.job_id for e in ledger if e.job_id is not None} == set(own_jobs)
    assert set(own_jobs) <= set(admitted)
    for job_id, job in own_jobs.items():
        kinds = ledger_kinds(ledger, job_id)
        assert kinds["reserve"] == [job.reserved_micro]
        assert kinds["release"] == [job.reserved_micro]
        if job.status == JobStatus.SUCCEEDED:
            assert kinds["charge"] == [job.cost_micro]
            assert 0 < job.cost_micro <= job.reserved_micro
        else:
            assert "charge" not in kinds, job
            assert job.cost_micro == 0
    succeeded = sum(1 for job in own_jobs.values() if job.status == JobStatus.SUCCEEDED)
    assert money.balance_micro == credited_micro - succeeded * ECHO_MICRO
