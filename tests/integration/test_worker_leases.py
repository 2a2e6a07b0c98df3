"""Leases and fencing: a job whose worker died is requeued once its lease lapses, a
stale worker's writes are refused by the lease token (no double finish, no double
charge), repeated losses end in `worker_lost`, and a live worker's job is never
taken from it by another process's maintenance."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from gengate.domain.states import JobStatus
from gengate.services.gateway import Gateway
from gengate.services.lifecycle import complete_job, requeue_job
from gengate.store import jobs as job_store
from gengate.store import queue as queue_store
from gengate.store.jobs import JobRow
from gengate.store.schema import jobs
from gengate.worker.maintenance import Maintenance
from tests.conftest import Caller, fast_settings
from tests.integration.test_providers import (
    PRICE_MICRO,
    ProbeProvider,
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


async def claim_as(gw: Gateway, model: str, worker_id: str, lease_s: float) -> list[JobRow]:
    """Claim like a worker would; the "worker" here then never heartbeats."""
    async with gw.db.transaction() as conn:
        return await queue_store.claim_jobs(
            conn,
            model=model,
            worker_id=worker_id,
            limit=10,
            lease_ttl=timedelta(seconds=lease_s),
            now=gw.clock(),
        )


async def complete_with(gw: Gateway, job_id: uuid.UUID, token: int) -> JobRow | None:
    async with gw.db.transaction() as conn:
        return await complete_job(
            conn,
            job_id,
            JobStatus.SUCCEEDED,
            now=gw.clock(),
            cost_micro=PRICE_MICRO,
            result={"outputs": []},
            lease_token=token,
        )


def unchanged(row: JobRow, expected: JobRow) -> bool:
    return (row.status, row.version, row.lease_token, row.worker_id) == (
        expected.status,
        expected.version,
        expected.lease_token,
        expected.worker_id,
    )


async def test_lapsed_lease_is_requeued_and_the_old_token_is_fenced_off(
    gateway: Gateway, caller: Caller
) -> None:
    install_model(gateway, "lossy", ProbeProvider(), retry_base_s=0, max_attempts=3)
    lease_s = 0.5  # the dead worker's lease (its length is the claimer's choice)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "lossy", {"label": "j"})

    # Timed from before the claim: the lease starts at the claim's clock reading,
    # which a slow claim transaction would otherwise place before this one.
    claimed_at = time.monotonic()
    [first] = await claim_as(gateway, "lossy", "dead-worker", lease_s)
    assert (first.status, first.attempts, first.worker_id) == ("running", 1, "dead-worker")

    # While the lease holds, maintenance leaves the job alone.
    await Maintenance(gateway).sweep()
    assert unchanged(await read_job(gateway, job.id), first)

    requeued = await sweep_until(
        gateway, job.id, lambda row: row.status == "queued", timeout_s=lease_s + 5, what="rescue"
    )
    assert time.monotonic() - claimed_at >= lease_s - 0.05
    assert requeued.attempts == 1  # the lost run counts as an attempt
    assert requeued.worker_id is None

    [second] = await claim_as(gateway, "lossy", "second-worker", lease_s)
    assert second.lease_token > first.lease_token

    # The first worker wakes up and tries to finish, requeue, report progress: refused.
    assert await complete_with(gateway, job.id, first.lease_token) is None
    async with gateway.db.transaction() as conn:
        now = gateway.clock()
        stale_requeue = await requeue_job(
            conn, job.id, lease_token=first.lease_token, now=now, delay_s=0
        )
        stale_progress = await job_store.update_progress(
            conn,
            job.id,
            lease_token=first.lease_token,
            progress=50,
            scenes_completed=None,
            scenes_total=None,
            now=now,
        )
    assert stale_requeue is None
    assert stale_progress is False
    assert unchanged(await read_job(gateway, job.id), second)
    assert await ledger_of(gateway, caller, job.id) == {"reserve": [PRICE_MICRO]}

    # The current holder finishes it, once; nobody can finish it again.
    done = await complete_with(gateway, job.id, second.lease_token)
    assert done is not None and done.status == "succeeded"
    assert await complete_with(gateway, job.id, first.lease_token) is None
    assert await complete_with(gateway, job.id, second.lease_token) is None
    assert await ledger_of(gateway, caller, job.id) == {
        "reserve": [PRICE_MICRO],
        "release": [PRICE_MICRO],
        "charge": [PRICE_MICRO],
    }
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - PRICE_MICRO
    assert after.reserved_micro == before.reserved_micro


async def test_job_lost_max_attempts_times_fails_with_worker_lost(
    gateway: Gateway, caller: Caller
) -> None:
    install_model(gateway, "lossy", ProbeProvider(), retry_base_s=0, max_attempts=3)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "lossy", {"label": "j"})

    for attempt in (1, 2, 3):
        # Each dying worker takes a short lease (a lease's length is the claimer's choice).
        [held] = await claim_as(gateway, "lossy", f"dead-worker-{attempt}", 0.2)
        assert held.attempts == attempt
        row = await sweep_until(
            gateway, job.id, lambda row: row.status != "running", timeout_s=5, what="rescue"
        )
        assert row.status == ("queued" if attempt < 3 else "failed")

    assert row.error["code"] == "worker_lost"
    assert row.attempts == 3
    await assert_uncharged(gateway, caller, row, before)
    # A failed job stays failed: nothing can claim it again.
    assert await claim_as(gateway, "lossy", "late-worker", 5) == []


async def test_maintenance_elsewhere_never_takes_a_live_workers_job(
    gateway: Gateway, caller: Caller, database_url: str, tmp_path: Path
) -> None:
    """A second process starting up (worker plus janitor) rescues the dead worker's job
    but leaves the job of the worker that still heartbeats where it is."""
    probe = ProbeProvider()
    install_model(gateway, "held", probe, retry_base_s=0)
    lease_s = gateway.settings.lease_ttl_s
    live = await submit(gateway, caller, "held", {"label": "live", "block": True})

    # One slot, taken by the live job: the orphan is left for the dead worker to claim.
    async with running_worker(gateway, "held", worker_id="live-worker", concurrency=1):
        running = await wait_for_status(gateway, live.id, "running", timeout_s=5)
        orphan = await submit(gateway, caller, "held", {"label": "orphan"})
        [orphaned] = await claim_as(gateway, "held", "dead-worker", lease_s)
        assert orphaned.id == orphan.id

        other = await Gateway.open(fast_settings(tmp_path / "other", database_url=database_url))
        try:
            install_model(other, "held", probe, retry_base_s=0)
            maintenance = Maintenance(other)
            maintenance.start()
            try:
                async with running_worker(other, "held", worker_id="restarted-worker"):
                    rescued = await wait_for_status(
                        other, orphan.id, "succeeded", timeout_s=lease_s + 5
                    )
                    # Keep sweeping until well past the live job's first lease.
                    await wait_until(
                        lambda: time.monotonic() - probe.starts[0].at > 1.5 * lease_s,
                        timeout_s=2 * lease_s,
                        what="more than a lease to pass",
                    )
                    held = await read_job(gateway, live.id)
            finally:
                await maintenance.stop()
        finally:
            await other.close()

        assert rescued.attempts == 2
        assert held.status == "running"
        assert held.worker_id == "live-worker"
        assert held.lease_token == running.lease_token
        assert held.attempts == 1
        assert [s.label for s in probe.starts] == ["live", "orphan"]
        assert probe.cancelled_at == {}

        probe.gate.set()
        finished = await wait_for_status(gateway, live.id, "succeeded", timeout_s=5)
    assert finished.attempts == 1
    assert finished.cost_micro == PRICE_MICRO


def renewed_after(moment: datetime) -> Callable[[JobRow], bool]:
    return lambda row: bool(row.lease_expires_at > moment)


async def renewal_waits_on_a_lock(gw: Gateway) -> bool:
    async with gw.db.read() as conn:
        result = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'UPDATE jobs SET lease_expires_at%'"
            )
        )
    return int(result.scalar_one()) > 0


async def test_a_job_claimed_during_a_lease_renewal_is_not_dropped(
    gateway: Gateway, caller: Caller
) -> None:
    """A heartbeat whose renewal started before a claim committed must not take the
    newly claimed job for a lost lease (it would be abandoned, yet still renewed)."""
    if gateway.db.is_sqlite:
        pytest.skip("SQLite serialises writers: a claim cannot commit during a renewal")
    probe = ProbeProvider()
    install_model(gateway, "m", probe, concurrency=2)
    first = await submit(gateway, caller, "m", {"label": "first", "block": True})

    async with running_worker(gateway, "m"):
        await wait_for_status(gateway, first.id, "running", timeout_s=5)
        # Hold the first job's row so that the next renewal stalls mid-statement.
        async with gateway.db.transaction() as conn:
            await conn.execute(select(jobs.c.id).where(jobs.c.id == first.id).with_for_update())
            await wait_until(
                lambda: renewal_waits_on_a_lock(gateway),
                timeout_s=3 * gateway.settings.lease_ttl_s,
                what="a renewal to wait on the row lock",
            )
            second = await submit(gateway, caller, "m", {"label": "second", "block": True})
            await wait_until(
                lambda: "second" in probe.labels_started(), timeout_s=5, what="the claim"
            )
            stalled_lease = (await read_job(gateway, first.id)).lease_expires_at
        # The stalled renewal completes now, without the second job in what it saw.
        # Two renewals later, the heartbeat has certainly acted on what that one saw.
        for _ in range(2):
            await wait_for_job(
                gateway,
                first.id,
                renewed_after(stalled_lease),
                timeout_s=3 * gateway.settings.lease_ttl_s,
                what="a renewal",
            )
            stalled_lease = (await read_job(gateway, first.id)).lease_expires_at
        assert "second" not in probe.cancelled_at, "the worker dropped a job it holds"
        probe.gate.set()
        done = await wait_for_status(gateway, second.id, "succeeded", timeout_s=5)
    assert done.attempts == 1
