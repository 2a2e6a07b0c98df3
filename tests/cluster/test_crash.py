"""Workers killed at random moments lose nothing (SPEC §3).

An API process and three worker processes on PostgreSQL run 300 jobs of mixed
latencies while the test SIGKILLs workers at random (at least five times) and starts
replacements. Every job must end terminal, none may be recorded as succeeding twice,
and the ledger must balance to the micro-dollar.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.checks import (
    assert_money_exact,
    assert_one_result_per_success,
    wait_until_all_terminal,
)
from tests.cluster.fleet import Fleet

JOBS = 300
KILLS = 6

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]


def test_random_worker_kills_lose_no_job_and_no_money(tmp_path: Path, pg_url: str) -> None:
    rng = random.Random(7)
    fleet = Fleet(
        tmp_path,
        pg_url,
        settings={"lease_ttl_s": 1.5, "claim_batch": 8},
        models={"echo": {"concurrency": 8, "max_attempts": 10, "retry_base_s": 0.1}},
    )
    try:
        api = fleet.start_api()
        for _ in range(3):
            fleet.start_worker(models="echo")
        account = api.create_account("crash", credits=100_000)
        with httpx.Client(
            base_url=api.url, headers={"Authorization": f"Bearer {account['api_key']}"}, timeout=30
        ) as client:
            latencies = [rng.choice([0, 50, 200, 800, 1500]) for _ in range(JOBS)]
            # A few jobs fail on purpose, so settlement of failures is exercised too.
            failing = set(rng.sample(range(JOBS), 15))
            kills_at = set(rng.sample(range(20, JOBS), KILLS))
            kills = 0
            for index, latency in enumerate(latencies):
                body = {
                    "input": {
                        "prompt": f"job {index}",
                        "latency_ms": latency,
                        "fail": index in failing,
                    },
                    "sync": False,
                }
                answer = client.post("/v1/models/echo/run", json=body)
                assert answer.status_code == 202, answer.text
                if index in kills_at:
                    victim = rng.randrange(len(fleet.workers))
                    assert fleet.workers[victim].process.poll() is None, "a worker died alone"
                    fleet.replace_worker(victim, models="echo")
                    kills += 1
                    time.sleep(rng.uniform(0.05, 0.4))
            assert kills == KILLS
        # Two more kills while the tail of the queue drains.
        for _ in range(2):
            time.sleep(1.0)
            fleet.replace_worker(0, models="echo")

        wait_until_all_terminal(pg_url, expected=JOBS, timeout_s=240)
        statuses = assert_money_exact(pg_url)
        assert_one_result_per_success(pg_url)
        assert statuses["succeeded"] >= JOBS - len(failing) - 10, statuses
        assert statuses["failed"] >= len(failing), statuses
    except BaseException:
        print(fleet.logs()[-20000:])
        raise
    finally:
        fleet.stop()
