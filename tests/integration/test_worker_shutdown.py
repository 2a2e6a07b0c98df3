"""Graceful shutdown: running jobs get the grace period to finish; what is still
running then is handed back to the queue without spending an attempt."""

from __future__ import annotations

import time

from gengate.services.gateway import Gateway
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller
from tests.integration.test_providers import (
    PRICE_MICRO,
    ProbeProvider,
    install_model,
    ledger_of,
    money,
    read_job,
    running_worker,
    submit,
    wait_for_status,
    wait_until,
)


async def test_shutdown_hands_a_long_job_back_without_spending_an_attempt(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "long", probe, max_attempts=1)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "long", {"label": "j", "block": True})

    runtime = WorkerRuntime(gateway, [gateway.catalog.get("long")])
    await runtime.start()
    try:
        running = await wait_for_status(gateway, job.id, "running", timeout_s=5)
        await wait_until(lambda: bool(probe.starts), timeout_s=5, what="the run to start")
        assert running.attempts == 1
    finally:
        asked = time.monotonic()
        await runtime.stop(grace_s=0.2)
    stopped_in = time.monotonic() - asked

    assert 0.19 <= stopped_in < 0.2 + 3  # the grace was given, then no more waiting
    assert "j" in probe.cancelled_at
    handed_back = await read_job(gateway, job.id)
    assert handed_back.status == "queued"
    assert handed_back.attempts == 0
    assert handed_back.worker_id is None
    assert handed_back.error is None
    assert await ledger_of(gateway, caller, job.id) == {"reserve": [PRICE_MICRO]}

    # Another worker runs it to success, and its run is still the first attempt.
    probe.gate.set()
    async with running_worker(gateway, "long"):
        done = await wait_for_status(gateway, job.id, "succeeded", timeout_s=5)
    assert done.attempts == 1
    assert [s.attempt for s in probe.starts] == [1, 1]
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - PRICE_MICRO
    assert after.reserved_micro == before.reserved_micro


async def test_shutdown_lets_a_job_finish_within_the_grace(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "short", probe)
    job = await submit(gateway, caller, "short", {"label": "j", "sleep_s": 0.4})

    runtime = WorkerRuntime(gateway, [gateway.catalog.get("short")])
    await runtime.start()
    try:
        await wait_until(lambda: bool(probe.starts), timeout_s=5, what="the run to start")
    finally:
        asked = time.monotonic()
        await runtime.stop(grace_s=5)
    stopped_in = time.monotonic() - asked

    done = await read_job(gateway, job.id)
    assert done.status == "succeeded"
    assert done.attempts == 1
    assert probe.cancelled_at == {}
    assert stopped_in < 5  # stop returns when the work is done, not at the end of the grace
