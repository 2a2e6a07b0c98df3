"""SPEC §3 across processes: one API process and several worker processes on one
PostgreSQL database (the recipe of docs/deployment.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.fleet import Fleet
from tests.cluster.providers import read_state
from tests.e2e.server import TERMINAL_STATUSES, wait_for_job

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]
RECORDING = "tests.cluster.providers:RecordingProvider"


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "provider-state.json"


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str, state_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(
        tmp_path,
        pg_url,
        models={
            "recorded": {
                "provider": RECORDING,
                "params": {"state_path": str(state_path)},
                "concurrency": 4,
                "max_running": 3,
            },
            "single": {
                "provider": RECORDING,
                "params": {"state_path": str(state_path)},
                "concurrency": 1,
            },
            "echo": {"retry_base_s": 0.5},
            "unserved": {"provider": "echo", "queue_ttl_s": 1},
        },
    )
    try:
        fleet.start_api()
        yield fleet
    except BaseException:
        print(fleet.logs()[-20000:])
        raise
    finally:
        fleet.stop()


def client_for(fleet: Fleet, account: dict[str, str]) -> httpx.Client:
    assert fleet.api is not None
    return fleet.api.client(account["api_key"])


def _seconds_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def submit(client: httpx.Client, model: str, **fields: Any) -> str:
    body = {"input": {"prompt": "x", **fields.pop("input", {})}, "sync": False, **fields}
    answer = client.post(f"/v1/models/{model}/run", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_cancel_reaches_a_job_running_in_another_process(fleet: Fleet, state_path: Path) -> None:
    assert fleet.api is not None
    fleet.start_worker(models="single")
    with client_for(fleet, fleet.api.create_account()) as client:
        job_id = submit(client, "single", input={"latency_ms": 60_000})
        wait_for_job(client, job_id, statuses={"running"}, timeout_s=30)
        deadline = time.monotonic() + 10
        while job_id not in [s[0] for s in read_state(state_path).get("started", [])]:
            assert time.monotonic() < deadline, "the provider never started"
            time.sleep(0.05)
        cancelled_at = time.time()
        answer = client.post(f"/v1/jobs/{job_id}/cancel")
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
        deadline = time.monotonic() + 5
        while job_id not in read_state(state_path).get("cancelled", {}):
            assert time.monotonic() < deadline, "the running task was never cancelled"
            time.sleep(0.05)
        reached_after = read_state(state_path)["cancelled"][job_id] - cancelled_at
        # Notifications carry it in milliseconds; the once-a-second check is the fallback.
        assert reached_after < 1.0, reached_after


def test_fleet_wide_concurrency_cap_holds_across_processes(fleet: Fleet, state_path: Path) -> None:
    assert fleet.api is not None
    for _ in range(3):
        fleet.start_worker(models="recorded")
    with client_for(fleet, fleet.api.create_account()) as client:
        ids = [submit(client, "recorded", input={"latency_ms": 300}) for _ in range(24)]
        for job_id in ids:
            assert wait_for_job(client, job_id, timeout_s=60)["status"] == "succeeded"
    state = read_state(state_path)
    pids = {pid for _, pid, _ in state["started"]}
    assert len(pids) >= 2, "the jobs should have spread over several worker processes"
    # Counted inside the provider as runs entered and left, in every process at once.
    assert state["max_running"] == 3


def test_fair_share_across_processes(fleet: Fleet, state_path: Path) -> None:
    assert fleet.api is not None
    flooder = fleet.api.create_account("flooder")
    latecomer = fleet.api.create_account("latecomer")
    with client_for(fleet, flooder) as a, client_for(fleet, latecomer) as b:
        flood = [submit(a, "single", input={"latency_ms": 100}) for _ in range(20)]
        late = [submit(b, "single", input={"latency_ms": 100}) for _ in range(2)]
        for _ in range(2):
            fleet.start_worker(models="single")
        for job_id in flood + late:
            wait_for_job(a if job_id in flood else b, job_id, timeout_s=60)
    order = [job_id for job_id, _, _ in read_state(state_path)["started"]]
    # Two workers take turns between the accounts: both late jobs start before the
    # flooder's sixth job, although they were submitted after all twenty.
    assert max(order.index(job_id) for job_id in late) < order.index(flood[5]), order


def test_timeout_expiry_and_retry_backoff_across_processes(fleet: Fleet) -> None:
    assert fleet.api is not None
    fleet.start_worker(models="echo")
    with client_for(fleet, fleet.api.create_account()) as client:
        slow = submit(client, "echo", input={"latency_ms": 20_000}, timeout_s=1)
        flaky = submit(client, "echo", input={"fail_attempts": 2})
        # No worker serves this model: the API process's sweeps expire its job.
        orphan = submit(client, "unserved")
        timed_out = wait_for_job(client, slow, timeout_s=30)
        assert timed_out["status"] == "failed" and timed_out["error"]["code"] == "timeout"
        expired = wait_for_job(client, orphan, timeout_s=30)
        assert expired["status"] == "failed" and expired["error"]["code"] == "expired"
        retried = wait_for_job(client, flaky, timeout_s=30)
        assert retried["status"] == "succeeded" and retried["attempts"] == 3
        # Two backoffs with retry_base_s = 0.5 s: at least 0.25 s, then at least 0.5 s.
        elapsed = _seconds_between(retried["started_at"], retried["completed_at"])
        assert elapsed >= 0.75, elapsed
        for job in (timed_out, expired, retried):
            assert job["status"] in TERMINAL_STATUSES
            assert job["cost"]["cost_micro"] == (1000 if job is retried else 0)
