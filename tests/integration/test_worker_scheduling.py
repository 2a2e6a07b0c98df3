"""Which jobs run, and in what order: the per-model concurrency limit, priority,
fair share between accounts, and `queue_position` as a prediction of the run order."""

from __future__ import annotations

from pathlib import Path

from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.store.jobs import JobRow
from tests.conftest import Caller, fast_settings, new_caller
from tests.integration.test_providers import (
    ProbeProvider,
    install_model,
    read_job,
    running_worker,
    submit,
    wait_for_status,
    wait_until,
)


async def all_succeeded(gw: Gateway, jobs: list[JobRow]) -> bool:
    for job in jobs:
        if (await read_job(gw, job.id)).status != "succeeded":
            return False
    return True


async def positions(gw: Gateway, jobs: dict[str, JobRow]) -> dict[str, int | None]:
    return {label: await job_service.queue_position(gw, row) for label, row in jobs.items()}


async def test_a_model_never_runs_more_than_its_concurrency(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "gpu", probe, concurrency=3)
    jobs = [
        await submit(gateway, caller, "gpu", {"label": f"j{i}", "sleep_s": 0.15}) for i in range(12)
    ]

    async with running_worker(gateway, "gpu"):
        await wait_until(
            lambda: all_succeeded(gateway, jobs), timeout_s=15, what="all jobs to succeed"
        )

    assert len(probe.starts) == 12
    assert probe.max_running == 3


async def test_a_full_model_does_not_hold_up_another_model(
    gateway: Gateway, caller: Caller
) -> None:
    busy, free = ProbeProvider(), ProbeProvider()
    install_model(gateway, "busy", busy, concurrency=2)
    install_model(gateway, "free", free, concurrency=2)
    for i in range(3):
        await submit(gateway, caller, "busy", {"label": f"b{i}", "block": True})

    async with running_worker(gateway, "busy", "free"):
        await wait_until(lambda: len(busy.starts) >= 2, timeout_s=5, what="busy to fill up")
        other = await submit(gateway, caller, "free", {"label": "f"})
        await wait_for_status(gateway, other.id, "succeeded", timeout_s=5)
        assert busy.max_running == 2
        assert len(busy.starts) == 2  # the third busy job still waits for a slot
        busy.gate.set()
        await wait_until(lambda: len(busy.finished) == 3, timeout_s=5, what="busy to drain")
    assert busy.max_running == 2


async def test_higher_priority_runs_first(gateway: Gateway, caller: Caller) -> None:
    probe = ProbeProvider()
    install_model(gateway, "ranked", probe)
    submitted = [
        ("low-1", -5),
        ("normal-1", 0),
        ("high-1", 5),
        ("low-2", -5),
        ("top", 10),
        ("high-2", 5),
        ("normal-2", 0),
    ]
    jobs = {
        label: await submit(gateway, caller, "ranked", {"label": label}, priority=priority)
        for label, priority in submitted
    }
    expected = ["top", "high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2"]
    predicted = await positions(gateway, jobs)

    async with running_worker(gateway, "ranked", concurrency=1):
        await wait_until(
            lambda: all_succeeded(gateway, list(jobs.values())), timeout_s=15, what="the queue"
        )

    assert probe.max_running == 1
    assert probe.labels_started() == expected
    assert predicted == {label: expected.index(label) for label in jobs}


async def test_fair_share_lets_a_second_account_past_a_flood(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "shared", probe)
    other = await new_caller(gateway, name="other")
    jobs = {f"a{i}": await submit(gateway, caller, "shared", {"label": f"a{i}"}) for i in range(20)}
    for i in range(2):
        jobs[f"b{i}"] = await submit(gateway, other, "shared", {"label": f"b{i}"})
    predicted = await positions(gateway, jobs)

    async with running_worker(gateway, "shared", concurrency=1):
        await wait_until(
            lambda: all_succeeded(gateway, list(jobs.values())), timeout_s=20, what="the queue"
        )

    assert probe.max_running == 1
    order = probe.labels_started()
    assert sorted(order) == sorted(jobs)
    # The flood does not starve B: both of B's jobs start before A's fifth.
    assert order.index("b0") < order.index("a4")
    assert order.index("b1") < order.index("a4")
    # Each account's own jobs still run oldest first.
    assert [label for label in order if label.startswith("a")] == [f"a{i}" for i in range(20)]
    assert [label for label in order if label.startswith("b")] == ["b0", "b1"]
    # queue_position named, for every queued job, how many would start before it.
    assert predicted == {label: order.index(label) for label in jobs}


async def test_fleet_cap_holds_across_worker_processes(
    gateway: Gateway, caller: Caller, database_url: str, tmp_path: Path
) -> None:
    """`max_running` caps a model across every worker, each with room for more."""
    probe = ProbeProvider()
    install_model(gateway, "capped", probe, concurrency=3, max_running=2)
    jobs = [
        await submit(gateway, caller, "capped", {"label": f"j{i}", "sleep_s": 0.15})
        for i in range(8)
    ]
    other = await Gateway.open(fast_settings(tmp_path / "other", database_url=database_url))
    try:
        install_model(other, "capped", probe, concurrency=3, max_running=2)
        async with running_worker(gateway, "capped"), running_worker(other, "capped"):
            await wait_until(
                lambda: all_succeeded(gateway, jobs), timeout_s=15, what="all jobs to succeed"
            )
    finally:
        await other.close()

    assert len(probe.starts) == 8
    assert probe.max_running == 2
