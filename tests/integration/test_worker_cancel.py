"""Cancelling a running job: the provider's task is cancelled within a second, its
cancel hook runs, nothing is charged, and a stale run cannot undo the cancellation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from tests.conftest import Caller, fast_settings
from tests.integration.test_providers import (
    PRICE_MICRO,
    ProbeProvider,
    SpinProvider,
    StubbornProvider,
    assert_uncharged,
    install_model,
    money,
    output_rows,
    read_job,
    running_worker,
    submit,
    wait_for_status,
    wait_until,
)

CANCEL_BOUND_S = 1.0  # SPEC §3: cancellation reaches a running job within a second


async def test_cancel_reaches_the_provider_and_its_hook(gateway: Gateway, caller: Caller) -> None:
    probe = ProbeProvider()
    install_model(gateway, "probe", probe, concurrency=1)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "probe", {"label": "victim", "block": True})

    async with running_worker(gateway, "probe"):
        await wait_until(lambda: bool(probe.starts), timeout_s=5, what="the run to start")
        asked = time.monotonic()
        cancelled = await job_service.cancel_job(
            gateway, caller.principal, job_service.public_job_id(job)
        )
        assert cancelled.status == "cancelled"
        await wait_until(
            lambda: "victim" in probe.hook_called_at,
            timeout_s=CANCEL_BOUND_S,
            what="the cancel hook",
        )
        assert probe.cancelled_at["victim"] - asked < CANCEL_BOUND_S
        assert probe.hook_called_at["victim"] >= probe.cancelled_at["victim"]

        # The slot is free again: the next job of this one-slot model runs.
        nxt = await submit(gateway, caller, "probe", {"label": "next"})
        assert (await wait_for_status(gateway, nxt.id, "succeeded", timeout_s=5)).attempts == 1

    done = await read_job(gateway, job.id)
    assert done.status == "cancelled"
    assert done.version == cancelled.version
    assert probe.finished == ["next"]
    assert await output_rows(gateway, job.id) == []
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - PRICE_MICRO  # only "next" is charged
    assert after.reserved_micro == before.reserved_micro


async def test_a_late_success_of_a_cancelled_run_changes_nothing(
    gateway: Gateway, caller: Caller
) -> None:
    stubborn = StubbornProvider()
    install_model(gateway, "stubborn", stubborn)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "stubborn", {"label": "j"})

    async with running_worker(gateway, "stubborn"):
        await wait_until(lambda: bool(stubborn.starts), timeout_s=5, what="the run to start")
        cancelled = await job_service.cancel_job(
            gateway, caller.principal, job_service.public_job_id(job)
        )
        # The provider shrugs off the cancellation, saves a file and reports success.
        await wait_until(lambda: stubborn.finished == ["j"], timeout_s=2, what="late success")
        # The worker voids that result: the file it saved is removed.
        key = stubborn.saved_keys[0]
        await wait_until(
            lambda: gateway.storage.local_path(key) is None,
            timeout_s=2,
            what="the void output to be deleted",
        )

    done = await read_job(gateway, job.id)
    assert done.status == "cancelled"
    assert done.version == cancelled.version
    assert done.result is None
    assert done.cost_micro == 0
    assert await output_rows(gateway, job.id) == []
    await assert_uncharged(gateway, caller, done, before)


async def test_cancel_stops_cpu_work_in_its_thread(gateway: Gateway, caller: Caller) -> None:
    spin = SpinProvider()
    install_model(gateway, "cpu", spin)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "cpu", {"label": "j"})

    async with running_worker(gateway, "cpu"):
        await wait_until(spin.spinning.is_set, timeout_s=5, what="the CPU work to start")
        asked = time.monotonic()
        await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(job))
        await wait_until(
            lambda: spin.stop_seen_at is not None,
            timeout_s=CANCEL_BOUND_S,
            what="the CPU loop to see the stop signal",
        )
        await wait_until(lambda: "j" in spin.hook_called_at, timeout_s=2, what="the cancel hook")

    assert spin.stop_seen_at is not None and spin.stop_seen_at - asked < CANCEL_BOUND_S
    assert spin.finished == []
    done = await read_job(gateway, job.id)
    assert done.status == "cancelled"
    await assert_uncharged(gateway, caller, done, before)


@pytest.mark.parametrize("worker_lease_s", [30.0, 1.5], ids=["default-lease", "short-lease"])
async def test_cancel_from_another_process_reaches_the_worker_within_a_second(
    gateway: Gateway, caller: Caller, database_url: str, tmp_path: Path, worker_lease_s: float
) -> None:
    """The process that cancels (an API replica, a janitor) is not the worker process.
    With the default lease the heartbeat's renewals alone would notice far too late;
    with a short one, the renewal that notices must still run the cancel hook."""
    probe = ProbeProvider()
    install_model(gateway, "probe", probe)  # the API process's catalog
    worker_gw = await Gateway.open(
        fast_settings(tmp_path / "worker", database_url=database_url, lease_ttl_s=worker_lease_s)
    )
    try:
        install_model(worker_gw, "probe", probe)
        before = await money(gateway, caller)
        job = await submit(gateway, caller, "probe", {"label": "remote", "block": True})
        async with running_worker(worker_gw, "probe"):
            await wait_until(lambda: bool(probe.starts), timeout_s=5, what="the run to start")
            asked = time.monotonic()
            await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(job))
            await wait_until(
                lambda: "remote" in probe.cancelled_at,
                timeout_s=CANCEL_BOUND_S * 3,
                what="the provider's task to be cancelled",
            )
            assert probe.cancelled_at["remote"] - asked < CANCEL_BOUND_S
            await wait_until(
                lambda: "remote" in probe.hook_called_at, timeout_s=2, what="the cancel hook"
            )
    finally:
        await worker_gw.close()

    done = await read_job(gateway, job.id)
    assert done.status == "cancelled"
    await assert_uncharged(gateway, caller, done, before)
