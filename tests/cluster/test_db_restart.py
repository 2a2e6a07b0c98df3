"""The database restarts mid-load; the deployment recovers by itself and loses nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.checks import (
    assert_money_exact,
    assert_one_result_per_success,
    wait_until_all_terminal,
)
from tests.cluster.fleet import Fleet
from tests.cluster.throwaway_pg import ThrowawayPostgres

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]
JOBS = 120


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


def submit_until_accepted(client: httpx.Client, index: int, deadline: float) -> str:
    """Submit one job, retrying through the outage with the same Idempotency-Key, so a
    request that reached the server before it failed never makes a second job."""
    key = str(uuid.UUID(int=index))
    body = {
        "input": {"prompt": f"job {index}", "latency_ms": 100 + (index % 4) * 100},
        "sync": False,
    }
    while True:
        try:
            answer = client.post("/v1/models/echo/run", json=body, headers={"Idempotency-Key": key})
            if answer.status_code == 202:
                return str(answer.json()["id"])
            assert answer.status_code >= 500, answer.text
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"job {index} was never accepted"
        time.sleep(0.2)


def test_database_restart_mid_load_loses_nothing(
    tmp_path: Path, postgres: ThrowawayPostgres
) -> None:
    fleet = Fleet(
        tmp_path,
        postgres.url,
        settings={"lease_ttl_s": 3.0},
        models={"echo": {"concurrency": 4, "max_attempts": 10, "retry_base_s": 0.2}},
    )
    try:
        api = fleet.start_api()
        for _ in range(2):
            fleet.start_worker(models="echo")
        account = api.create_account("restart", credits=10_000)
        deadline = time.monotonic() + 180
        ids: set[str] = set()
        with api.client(account["api_key"]) as client:
            for index in range(JOBS):
                ids.add(submit_until_accepted(client, index, deadline))
                if index == JOBS // 3:
                    postgres.stop("fast")
                    time.sleep(2.0)
                    postgres.start()
            assert len(ids) == JOBS
            wait_until_all_terminal(postgres.url, expected=JOBS, timeout_s=180)
            statuses = assert_money_exact(postgres.url)
            assert statuses == {"succeeded": JOBS}, statuses
            assert_one_result_per_success(postgres.url)
            # Recovered by itself: the API answers ready, the workers still claim.
            assert httpx.get(f"{api.url}/readyz").status_code == 200
            assert all(worker.process.poll() is None for worker in fleet.workers)
    except BaseException:
        print(fleet.logs()[-20000:])
        raise
    finally:
        fleet.stop()
