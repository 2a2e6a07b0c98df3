"""Event streams across processes: a job run by a `gengate worker` process reaches the
streams served by a separate API process (`gengate serve --no-workers`).

- On PostgreSQL, through the LISTEN/NOTIFY relay: the API process re-reads on its timer
  only every 60 s there, so every change that arrives sooner came with a notification
  from the worker's process.
- On one SQLite file (split processes, no relay), through the streams' own re-reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from gengate.services.events import ACCOUNT_WINDOW
from tests.cluster.fleet import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

POLL_INTERVAL_S = 60.0
# What the streams take here is the job (1.5 s) plus a worker start (~2 s); the bound
# has room for five times that and stays far below the poll interval.
DEADLINE_S = 25.0
JOB_INPUT = {"prompt": "cluster events", "latency_ms": 1500, "progress_steps": 3}


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> Iterator[Fleet]:
    fleet = Fleet(
        tmp_path,
        pg_url,
        settings={"events_poll_interval_s": POLL_INTERVAL_S, "events_keepalive_s": 1.0},
        models={"echo": {"params": {"max_latency_ms": 10_000}}},
    )
    try:
        fleet.start_api()
        fleet.start_worker(models="echo")
        yield fleet
    except BaseException:
        print(fleet.logs()[-20000:])
        raise
    finally:
        fleet.stop()


def submit(client: httpx.Client, job_input: dict[str, Any]) -> str:
    answer = client.post("/v1/models/echo/run", json={"input": job_input, "sync": False})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def status_of(event: ServerSentEvent) -> str:
    record: dict[str, Any] = json.loads(event.data)
    return str(record["status"])


def test_a_worker_in_another_process_reaches_the_streams(fleet: Fleet) -> None:
    check_streams_follow_the_worker(fleet, JOB_INPUT)


def test_split_processes_on_sqlite_stream_by_re_reading(tmp_path: Path) -> None:
    """No relay between processes on SQLite: the streams see the worker's changes on
    their timer (here every 0.3 s), which is what they fall back on anywhere."""
    fleet = Fleet(
        tmp_path,
        f"sqlite:///{tmp_path / 'shared.db'}",
        settings={"events_poll_interval_s": 0.3, "events_keepalive_s": 1.0},
        models={"echo": {"params": {"max_latency_ms": 10_000}}},
    )
    try:
        fleet.start_api()
        fleet.start_worker(models="echo")
        # Longer steps than the re-reads, so that each progress step is read.
        check_streams_follow_the_worker(fleet, {**JOB_INPUT, "latency_ms": 2100})
        check_an_older_job_is_still_followed(fleet)
    except BaseException:
        print(fleet.logs()[-20000:])
        raise
    finally:
        fleet.stop()


def check_streams_follow_the_worker(fleet: Fleet, job_input: dict[str, Any]) -> None:
    assert fleet.api is not None
    account = fleet.api.create_account()
    with fleet.api.client(account["api_key"]) as client:
        client.timeout = httpx.Timeout(DEADLINE_S)

        # One job's stream, opened while the job waits for the worker's first claim.
        job_id = submit(client, job_input)
        started = time.monotonic()
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            events = [e for e in EventSource(response).iter_sse() if e.data]
        assert time.monotonic() - started < DEADLINE_S
        names = [event.event for event in events]
        assert names[-1] == "succeeded", names
        assert "progress" in names, names
        assert all(json.loads(e.data)["id"] == job_id for e in events)
        # Every event after the first reports a change the worker made.
        assert len(events) >= 3, names

        # The account's stream, opened first: the next job, from its submit to its end.
        started = time.monotonic()
        seen: list[ServerSentEvent] = []
        with client.stream("GET", "/v1/events") as response:
            next_job = ""
            for event in EventSource(response).iter_sse():
                assert time.monotonic() - started < DEADLINE_S, [e.event for e in seen]
                if not event.data:
                    if not next_job:  # the checkpoint: the stream is open
                        next_job = submit(client, job_input)
                    continue
                seen.append(event)
                if event.event == "succeeded":
                    break
        assert {json.loads(e.data)["id"] for e in seen} == {next_job}
        assert [status_of(e) for e in seen][-1] == "succeeded"
        assert "running" in {status_of(e) for e in seen}


def check_an_older_job_is_still_followed(fleet: Fleet) -> None:
    """A job the account stream saw queued keeps being re-read after newer jobs push it
    out of the newest jobs the stream re-reads, until it is finished."""
    assert fleet.api is not None
    account = fleet.api.create_account()
    with fleet.api.client(account["api_key"]) as client:
        client.timeout = httpx.Timeout(DEADLINE_S)
        started = time.monotonic()
        older = ""
        with client.stream("GET", "/v1/events") as response:
            for event in EventSource(response).iter_sse():
                assert time.monotonic() - started < DEADLINE_S
                if not event.data:
                    if not older:  # the checkpoint
                        older = submit(client, {"prompt": "older", "latency_ms": 3000})
                        for index in range(ACCOUNT_WINDOW + 2):
                            submit(client, {"prompt": f"newer {index}"})
                    continue
                if json.loads(event.data)["id"] == older and event.event == "succeeded":
                    break
        newest = client.get("/v1/jobs", params={"limit": ACCOUNT_WINDOW}).json()["jobs"]
        assert older not in {job["id"] for job in newest}
