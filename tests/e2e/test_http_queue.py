"""Queued jobs on an API-only server (`serve --no-workers`, nothing runs them):
queue positions, cancelling queued jobs, and a model's queue depth (503)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ServerProcess, assert_error, start_server, wait_for_job

ECHO_DEPTH = 2
START_BALANCE_MICRO = 10_000_000
IMAGE_PRICE_MICRO = 10_000


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("api-only"),
        models={
            "echo": {"queue_depth": ECHO_DEPTH},
            "local-image": {"sync_window_s": 1},
            "short-lived": {"provider": "echo", "queue_ttl_s": 1},
        },
        args=("--no-workers",),
    )
    try:
        yield process
    finally:
        process.stop()


def _queue(client: httpx.Client, model: str, prompt: str, **envelope: Any) -> dict[str, Any]:
    body = {"input": {"prompt": prompt, "width": 64, "height": 64}, "sync": False, **envelope}
    if model != "local-image":
        body["input"] = {"prompt": prompt}
    answer = client.post(f"/v1/models/{model}/run", json=body)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    assert job["status"] == "queued"
    return job


def _position(client: httpx.Client, job_id: str) -> int | None:
    answer = client.get(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    position: int | None = answer.json()["queue_position"]
    return position


def _cancel_all(client: httpx.Client, jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        client.post(f"/v1/jobs/{job['id']}/cancel")


def test_ready_without_workers(api_only: ServerProcess) -> None:
    with api_only.client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["workers"] is True


def test_queue_positions_follow_priority_and_fair_share(api_only: ServerProcess) -> None:
    alice, bob = api_only.create_account("alice"), api_only.create_account("bob")
    with api_only.client(alice["api_key"]) as a, api_only.client(bob["api_key"]) as b:
        flood = [_queue(a, "local-image", f"a{n}") for n in range(5)]
        try:
            assert [job["queue_position"] for job in flood] == [0, 1, 2, 3, 4]
            assert [_position(a, job["id"]) for job in flood] == [0, 1, 2, 3, 4]
            # Another account's job does not queue behind the whole flood.
            bobs = _queue(b, "local-image", "b0")
            flood.append(bobs)
            assert bobs["queue_position"] <= 2
            positions = [_position(a, job["id"]) for job in flood[:5]]
            assert sorted([*positions, bobs["queue_position"]]) == [0, 1, 2, 3, 4, 5]
            assert positions[0] == 0
            assert positions[4] == 5
            # A higher priority goes first.
            urgent = _queue(a, "local-image", "urgent", priority=5)
            flood.append(urgent)
            assert urgent["queue_position"] == 0
            assert _position(a, flood[0]["id"]) == 1
            listed = {job["id"]: job["queue_position"] for job in a.get("/v1/jobs").json()["jobs"]}
            assert listed[urgent["id"]] == 0
            assert listed[flood[0]["id"]] == 1
            # Positions close up when a job ahead is cancelled.
            assert a.delete(f"/v1/jobs/{urgent['id']}").status_code == 200
            assert _position(a, flood[0]["id"]) == 0
            assert _position(a, flood[4]["id"]) == 5
        finally:
            _cancel_all(a, flood[:5] + flood[6:])
            _cancel_all(b, [bobs])


def test_a_sync_submit_answers_202_when_the_sync_window_runs_out(api_only: ServerProcess) -> None:
    """Nothing runs the job here, so a sync submit waits out the model's 1 s window and
    answers 202 with the queued job and where to poll it."""
    account = api_only.create_account()
    with api_only.client(account["api_key"]) as client:
        started = time.monotonic()
        answer = client.post(
            "/v1/models/local-image/run", json={"input": {"prompt": "wait", "width": 64}}
        )
        assert time.monotonic() - started >= 0.9
        assert answer.status_code == 202, answer.text
        assert "preference-applied" not in answer.headers
        job = answer.json()
        assert job["status"] == "queued"
        assert job["queue_position"] == 0
        assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
        polled = client.get(answer.headers["location"])
        assert polled.json()["id"] == job["id"]
        assert int(polled.headers["retry-after"]) >= 1
        assert client.delete(answer.headers["location"]).status_code == 200


@pytest.mark.parametrize("how", ["post", "delete"])
def test_cancel_a_queued_job(api_only: ServerProcess, how: str) -> None:
    account = api_only.create_account()
    with api_only.client(account["api_key"]) as client:
        first = _queue(client, "local-image", "first")
        second = _queue(client, "local-image", "second")
        assert client.get("/v1/account").json()["reserved_micro"] == 2 * IMAGE_PRICE_MICRO
        if how == "post":
            answer = client.post(f"/v1/jobs/{first['id']}/cancel")
        else:
            answer = client.delete(f"/v1/jobs/{first['id']}")
        assert answer.status_code == 200, answer.text
        cancelled = answer.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["queue_position"] is None
        assert cancelled["started_at"] is None
        assert cancelled["cost"]["cost_micro"] == 0
        assert _position(client, second["id"]) == second["queue_position"] - 1
        view = client.get("/v1/account").json()
        assert view["reserved_micro"] == IMAGE_PRICE_MICRO
        assert view["balance_micro"] == START_BALANCE_MICRO
        assert_error(client.post(f"/v1/jobs/{first['id']}/cancel"), 409, "conflict")
        assert_error(client.delete(f"/v1/jobs/{first['id']}"), 409, "conflict")
        assert client.post(f"/v1/jobs/{second['id']}/cancel").status_code == 200
        assert client.get("/v1/account").json()["reserved_micro"] == 0


def _queued_gauge(client: httpx.Client, model: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gengate_jobs" and sample.labels == {
                "model": model,
                "status": "queued",
            }:
                return float(sample.value)
    raise AssertionError(f"no gengate_jobs gauge for {model}")


def test_a_full_queue_answers_503_overloaded(api_only: ServerProcess) -> None:
    account = api_only.create_account()
    with api_only.client(account["api_key"]) as client:
        held = [_queue(client, "echo", f"e{n}") for n in range(ECHO_DEPTH)]
        try:
            assert _queued_gauge(client, "echo") == ECHO_DEPTH
            for answer in (
                client.post("/v1/models/echo/run", json={"input": {"prompt": "x"}, "sync": False}),
                client.post("/v1/models/echo/run", json={"input": {"prompt": "x"}}),
                client.post("/v1/images/generations", json={"model": "echo", "prompt": "x"}),
            ):
                error = assert_error(answer, 503, "overloaded")
                assert int(answer.headers["retry-after"]) >= 1
                assert error["details"]["model"] == "echo"
                assert error["details"]["queue_depth"] == ECHO_DEPTH
            # The refused submits left no job and no reservation behind.
            assert len(client.get("/v1/jobs").json()["jobs"]) == ECHO_DEPTH
            assert client.get("/v1/account").json()["reserved_micro"] == ECHO_DEPTH * 1000
            # Other models keep their own queues.
            other = _queue(client, "local-image", "other")
            held.append(other)
            # A cancelled job frees its place.
            assert client.post(f"/v1/jobs/{held[0]['id']}/cancel").status_code == 200
            held.append(_queue(client, "echo", "again"))
        finally:
            _cancel_all(client, held)


def test_cancel_after_cancels_a_job_that_never_started(api_only: ServerProcess) -> None:
    account = api_only.create_account()
    with api_only.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/local-image/run",
            json={"input": {"prompt": "late", "width": 64}, "sync": False},
            headers={"Cancel-After": "1"},
        )
        assert answer.status_code == 202, answer.text
        job = wait_for_job(client, answer.json()["id"], timeout_s=10)
        assert job["status"] == "cancelled"
        assert job["started_at"] is None
        assert job["cost"]["cost_micro"] == 0
        assert client.get("/v1/account").json()["reserved_micro"] == 0


def test_a_job_queued_past_its_models_queue_ttl_fails_as_expired(api_only: ServerProcess) -> None:
    account = api_only.create_account()
    with api_only.client(account["api_key"]) as client:
        queued = _queue(client, "short-lived", "too late")
        assert client.get("/v1/account").json()["reserved_micro"] == 1000
        job = wait_for_job(client, queued["id"], timeout_s=10)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "expired"
        assert job["error"]["message"]
        assert job["cost"]["cost_micro"] == 0
        view = client.get("/v1/account").json()
        assert (view["balance_micro"], view["reserved_micro"]) == (START_BALANCE_MICRO, 0)
