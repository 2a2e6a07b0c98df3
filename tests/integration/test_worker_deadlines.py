"""Deadlines: the per-job timeout, the model's queue TTL, and Cancel-After. Each ends
the job (failed `timeout`, failed `expired`, cancelled) without charging it."""

from __future__ import annotations

from gengate.services.gateway import Gateway
from gengate.store.types import utcnow
from gengate.worker.maintenance import Maintenance
from tests.conftest import Caller
from tests.integration.test_providers import (
    PRICE_MICRO,
    ProbeProvider,
    SpinProvider,
    assert_uncharged,
    install_model,
    ledger_of,
    money,
    read_job,
    running_worker,
    submit,
    sweep_until,
    wait_for_job,
    wait_for_status,
    wait_until,
)


async def test_jobs_running_past_their_timeout_fail_with_timeout(
    gateway: Gateway, caller: Caller
) -> None:
    """An async provider waiting on something, and CPU work in a worker thread that
    checks the stop signal: both are interrupted at the job's timeout."""
    probe, spin = ProbeProvider(), SpinProvider()
    install_model(gateway, "slow", probe, retry_base_s=0.02)
    install_model(gateway, "cpu", spin, retry_base_s=0.02)
    before = await money(gateway, caller)
    waiting = await submit(gateway, caller, "slow", {"label": "w", "block": True}, timeout_s=1)
    spinning = await submit(gateway, caller, "cpu", {"label": "s"}, timeout_s=1)

    async with running_worker(gateway, "slow", "cpu"):
        waited = await wait_for_status(gateway, waiting.id, "failed", timeout_s=6)
        spun = await wait_for_status(gateway, spinning.id, "failed", timeout_s=6)
        # The CPU loop saw the stop signal and returned (it would spin for 20 s).
        await wait_until(
            lambda: spin.stop_seen_at is not None, timeout_s=2, what="the CPU loop to stop"
        )

    for done, provider in ((waited, probe), (spun, spin)):
        assert done.error["code"] == "timeout"
        assert done.attempts == 1  # a timeout is final, not retried
        assert len(provider.starts) == 1
        assert provider.finished == []
    # Interrupted no sooner than the timeout (less clock jitter), and not much later.
    assert 0.95 <= probe.cancelled_at["w"] - probe.starts[0].at < 1.0 + 3
    assert spin.stop_seen_at is not None
    assert 0.95 <= spin.stop_seen_at - spin.starts[0].at < 1.0 + 3
    assert spin.spin_thread is not None and spin.spin_thread != spin.loop_thread
    for done in (waited, spun):
        assert done.cost_micro == 0
        assert await ledger_of(gateway, caller, done.id) == {
            "reserve": [PRICE_MICRO],
            "release": [PRICE_MICRO],
        }
    assert await money(gateway, caller) == before


async def test_job_queued_past_the_queue_ttl_expires(gateway: Gateway, caller: Caller) -> None:
    probe = ProbeProvider()
    install_model(gateway, "ttl", probe, queue_ttl_s=1)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "ttl", {"label": "j"})

    # Within its TTL, a sweep leaves it alone.
    await Maintenance(gateway).sweep()
    assert (await read_job(gateway, job.id)).status == "queued"

    # Past its TTL no worker may start it, even before the sweep fails it.
    await wait_until(lambda: utcnow() > job.expires_at, timeout_s=3, what="the TTL to pass")
    async with running_worker(gateway, "ttl"):
        done = await sweep_until(
            gateway, job.id, lambda row: row.status != "queued", timeout_s=5, what="expiry"
        )
    assert probe.starts == []
    assert done.status == "failed"
    assert done.error["code"] == "expired"
    assert (done.completed_at - job.created_at).total_seconds() >= 1
    assert done.attempts == 0
    await assert_uncharged(gateway, caller, done, before)


async def test_cancel_after_cancels_a_queued_job(gateway: Gateway, caller: Caller) -> None:
    install_model(gateway, "probe", ProbeProvider())
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "probe", {"label": "j"}, cancel_after_s=0.3)

    maintenance = Maintenance(gateway)
    maintenance.start()
    try:
        done = await wait_for_job(
            gateway, job.id, lambda row: row.status != "queued", timeout_s=5, what="cancel"
        )
    finally:
        await maintenance.stop()

    assert done.status == "cancelled"
    assert (done.completed_at - job.created_at).total_seconds() >= 0.3
    await assert_uncharged(gateway, caller, done, before)


async def test_cancel_after_cancels_a_running_job(gateway: Gateway, caller: Caller) -> None:
    probe = ProbeProvider()
    install_model(gateway, "probe", probe)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "probe", {"label": "j", "block": True}, cancel_after_s=0.6)

    maintenance = Maintenance(gateway)
    maintenance.start()
    try:
        async with running_worker(gateway, "probe"):
            await wait_for_status(gateway, job.id, "running", timeout_s=5)
            done = await wait_for_job(
                gateway, job.id, lambda row: row.status != "running", timeout_s=5, what="cancel"
            )
            await wait_until(
                lambda: "j" in probe.hook_called_at, timeout_s=2, what="the cancel hook"
            )
    finally:
        await maintenance.stop()

    assert done.status == "cancelled"
    assert (done.completed_at - job.created_at).total_seconds() >= 0.6
    assert "j" in probe.cancelled_at  # the provider's task was cancelled
    assert probe.finished == []
    await assert_uncharged(gateway, caller, done, before)
