"""Submitting jobs over HTTP: sync and async answers, the modality endpoints,
Idempotency-Key replays and Cancel-After deadlines."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.server import ServerProcess, assert_error, wait_for_job


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


JOB_ID = re.compile(r"^job_[0-9a-f]{32}$")
ECHO_PRICE_MICRO = 1_000
START_BALANCE_MICRO = 10_000_000


def _echo(prompt: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"input": {"prompt": prompt, **fields.pop("input", {})}, **fields}


def test_the_catalog_describes_the_models_it_runs(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        models = {model["id"]: model for model in client.get("/v1/models").json()["models"]}
        assert {"echo", "local-image"} <= set(models)
        echo = models["echo"]
        assert echo["modality"] == "image"
        assert echo["pricing"]["micro_per_unit"] == ECHO_PRICE_MICRO
        assert echo["input_schema"]["required"] == ["prompt"]
        assert echo["limits"]["sync_window_s"] == 5
        assert models["local-image"]["pricing"]["micro_per_unit"] == 10_000
        assert client.get("/v1/models/echo").json() == echo


def test_sync_run_answers_200_with_the_finished_job(
    server: ServerProcess, account: dict[str, str]
) -> None:
    body = _echo(tags=[{"key": "team", "value": "a"}], metadata={"ticket": 7})
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json=body)
    assert answer.status_code == 200, answer.text
    assert "location" not in answer.headers
    job = answer.json()
    assert JOB_ID.match(job["id"])
    assert job["object"] == "job"
    assert job["status"] == "succeeded"
    assert job["model"] == "echo"
    assert job["modality"] == "image"
    assert job["progress"] == 100
    assert job["input"]["prompt"] == "hello"
    assert job["tags"] == [{"key": "team", "value": "a"}]
    assert job["metadata"] == {"ticket": 7}
    assert job["error"] is None
    assert job["webhook"] is None
    assert job["queue_position"] is None
    assert job["cost"] == {"credits": 0.1, "cost_micro": 1000, "cost_usd": 0.001, "currency": "USD"}
    output = job["result"]["outputs"][0]
    assert job["result"]["url"] == output["url"]
    assert output["url"].startswith(f"{server.url}/v1/files/")
    assert output["content_type"] == "image/png"
    assert (output["width"], output["height"]) == (64, 64)
    assert job["asset_ids"] == [output["asset_id"]]
    assert job["created_at"].endswith("Z")
    assert job["started_at"] is not None
    assert job["completed_at"] is not None
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]


def test_sync_failed_job_answers_200_with_its_error(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json=_echo(input={"fail": True}))
        assert answer.status_code == 200, answer.text
        job = answer.json()
        assert job["status"] == "failed"
        assert job["error"]["code"] == "provider_error"
        assert "echo" in job["error"]["message"]
        assert "Traceback" not in job["error"]["message"]
        assert job["result"] is None
        assert job["cost"]["cost_micro"] == 0
        assert client.get("/v1/account").json()["balance_micro"] == START_BALANCE_MICRO


def test_prefer_wait_shortens_the_sync_window_to_a_202(
    server: ServerProcess, account: dict[str, str]
) -> None:
    """A 3 s job with `Prefer: wait=1` answers 202 (the 5 s sync window would have
    given a 200), with the job id in the body and in `Location`."""
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/echo/run",
            json=_echo(input={"latency_ms": 3000}),
            headers={"Prefer": "respond-async, wait=1"},
        )
        assert answer.status_code == 202, answer.text
        assert answer.headers["preference-applied"] == "wait=1"
        job = answer.json()
        assert job["status"] in {"queued", "running"}
        assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
        assert client.get(answer.headers["location"]).json()["id"] == job["id"]
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_preference_applied_states_the_wait_that_was_applied(
    server: ServerProcess, account: dict[str, str]
) -> None:
    """Asked to wait 60 s on a model whose sync window is 5 s, the server waits 5 s at
    most: `Preference-Applied` must not claim it honoured wait=60 (RFC 7240)."""
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json=_echo(), headers={"Prefer": "wait=60"})
        assert answer.status_code == 200, answer.text
        assert answer.headers.get("preference-applied") in (None, "wait=5")


def test_sync_false_answers_202_at_once(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        started = time.monotonic()
        body = _echo(input={"latency_ms": 10000}, sync=False)
        answer = client.post("/v1/models/echo/run", json=body)
        # Far below the 5 s sync window this submit would otherwise wait out.
        assert time.monotonic() - started < 4.0
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert JOB_ID.match(job["id"])
        assert job["status"] in {"queued", "running"}
        assert job["result"] is None
        assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_image_endpoint_defaults_to_local_image_and_answers_202(
    server: ServerProcess, account: dict[str, str]
) -> None:
    body = {
        "prompt": "a lighthouse",
        "width": 64,
        "height": 64,
        "seed": 3,
        "tags": [{"key": "k", "value": "v"}],
        "metadata": {"m": 1},
        "priority": 2,
    }
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/images/generations", json=body)
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["model"] == "local-image"
        assert job["modality"] == "image"
        # Envelope fields are taken out; everything else, prompt included, is the input.
        assert job["input"]["prompt"] == "a lighthouse"
        assert (job["input"]["width"], job["input"]["height"], job["input"]["seed"]) == (64, 64, 3)
        assert not {"tags", "metadata", "priority", "model"} & set(job["input"])
        assert job["tags"] == [{"key": "k", "value": "v"}]
        assert job["metadata"] == {"m": 1}
        assert job["priority"] == 2
        assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
        finished = wait_for_job(client, job["id"])
        assert finished["status"] == "succeeded"
        assert finished["cost"]["credits"] == 1.0


def test_image_endpoint_runs_a_named_model_and_never_waits(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/images/generations", json={"model": "echo", "prompt": "p", "latency_ms": 3000}
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["model"] == "echo"
        assert answer.json()["status"] in {"queued", "running"}
        # `sync: true` does not turn a modality endpoint into a waiting one.
        body = {"model": "echo", "prompt": "q", "latency_ms": 3000, "sync": True}
        answer = client.post("/v1/images/generations", json=body)
        assert answer.status_code == 202, answer.text


# Each modality endpoint with the smallest input SPEC §7 gives its built-in model.
MODALITY_CASES = [
    ("/v1/videos/generations", "video", "local-video", {"prompt": "a", "duration": 1}),
    ("/v1/audio/music", "music", "local-music", {"prompt": "a", "duration": 1}),
    ("/v1/audio/speech", "voice", "local-voice", {"text": "Hello there."}),
    ("/v1/3d/generations", "3d", "local-3d", {"prompt": "a", "detail": 1}),
    ("/v1/stories", "story", "local-story", {"prompt": "a", "scenes": 1}),
]


@pytest.mark.parametrize(("path", "modality", "default_model", "model_input"), MODALITY_CASES)
def test_other_modality_endpoints_answer_for_their_default_model(
    server: ServerProcess,
    account: dict[str, str],
    path: str,
    modality: str,
    default_model: str,
    model_input: dict[str, Any],
) -> None:
    """202 with the modality's built-in model where this build has it, else 404 naming
    that model; another modality's model is refused."""
    with server.client(account["api_key"]) as client:
        catalog = {model["id"] for model in client.get("/v1/models").json()["models"]}
        answer = client.post(path, json={**model_input, "sync": False})
        if default_model in catalog:
            assert answer.status_code == 202, answer.text
            job = answer.json()
            assert (job["model"], job["modality"]) == (default_model, modality)
            assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
            client.post(f"/v1/jobs/{job['id']}/cancel")
        else:
            error = assert_error(answer, 404, "not_found")
            assert error["details"] == {"model": default_model}
        wrong = client.post(path, json={"model": "echo", "prompt": "x"})
        assert_error(wrong, 422, "invalid_input")


def test_idempotent_replay_of_a_sync_submit(server: ServerProcess, account: dict[str, str]) -> None:
    headers = {"Idempotency-Key": "order-1"}
    with server.client(account["api_key"]) as client:
        first = client.post("/v1/models/echo/run", json=_echo(), headers=headers)
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        again = client.post("/v1/models/echo/run", json=_echo(), headers=headers)
        assert again.status_code == 200, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["status"] == "succeeded"
        # The same body written differently (key order, explicit defaults) is the same body.
        reordered = {"sync": True, "input": {"prompt": "hello"}, "priority": 0}
        third = client.post("/v1/models/echo/run", json=reordered, headers=headers)
        assert third.status_code == 200, third.text
        assert third.json()["id"] == first.json()["id"]
        listed = client.get("/v1/jobs").json()["jobs"]
        assert [job["id"] for job in listed] == [first.json()["id"]]
        account_view = client.get("/v1/account").json()
        assert account_view["balance_micro"] == START_BALANCE_MICRO - ECHO_PRICE_MICRO


def test_idempotent_replay_of_an_async_submit_and_409_for_another_body(
    server: ServerProcess, account: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "k-async"}
    body = _echo(input={"latency_ms": 500}, sync=False)
    with server.client(account["api_key"]) as client:
        first = client.post("/v1/models/echo/run", json=body, headers=headers)
        assert first.status_code == 202, first.text
        again = client.post("/v1/models/echo/run", json=body, headers=headers)
        assert again.status_code == 202, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert again.json()["id"] == first.json()["id"]

        other = _echo("a different prompt", input={"latency_ms": 500}, sync=False)
        error = assert_error(
            client.post("/v1/models/echo/run", json=other, headers=headers), 409, "conflict"
        )
        assert error["details"] == {"idempotency_key": "k-async"}
        # The same body on another route is another request.
        modality = client.post(
            "/v1/images/generations", json={"model": "echo", "prompt": "hello"}, headers=headers
        )
        assert_error(modality, 409, "conflict")

        finished = wait_for_job(client, first.json()["id"])
        replay = client.post("/v1/models/echo/run", json=body, headers=headers)
        # The original status code, with the job's current record.
        assert replay.status_code == 202
        assert replay.json()["status"] == finished["status"] == "succeeded"
        assert len(client.get("/v1/jobs").json()["jobs"]) == 1


def test_a_sync_submit_that_answered_202_replays_as_202(
    server: ServerProcess, account: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "k-slow", "Prefer": "wait=0"}
    body = _echo(input={"latency_ms": 300})
    with server.client(account["api_key"]) as client:
        first = client.post("/v1/models/echo/run", json=body, headers=headers)
        assert first.status_code == 202, first.text
        wait_for_job(client, first.json()["id"])
        replay = client.post("/v1/models/echo/run", json=body, headers=headers)
        assert replay.status_code == 202
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == first.json()["id"]
        assert replay.json()["status"] == "succeeded"


def test_idempotency_keys_are_scoped_to_the_account(server: ServerProcess) -> None:
    alice, bob = server.create_account("alice"), server.create_account("bob")
    headers = {"Idempotency-Key": "shared-key"}
    body = _echo(sync=False)
    with server.client(alice["api_key"]) as a, server.client(bob["api_key"]) as b:
        first = a.post("/v1/models/echo/run", json=body, headers=headers)
        second = b.post("/v1/models/echo/run", json=body, headers=headers)
        assert first.status_code == second.status_code == 202
        assert "idempotent-replayed" not in second.headers
        assert first.json()["id"] != second.json()["id"]


def test_concurrent_duplicates_create_one_job(
    server: ServerProcess, account: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "burst"}
    body = _echo(input={"latency_ms": 200}, sync=False)

    def submit(_: int) -> tuple[int, str]:
        with server.client(account["api_key"]) as client:
            answer = client.post("/v1/models/echo/run", json=body, headers=headers)
            return answer.status_code, answer.json().get("id", answer.text)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(submit, range(8)))
    assert {status for status, _ in answers} == {202}, answers
    assert len({job_id for _, job_id in answers}) == 1, answers
    with server.client(account["api_key"]) as client:
        assert len(client.get("/v1/jobs").json()["jobs"]) == 1
        wait_for_job(client, answers[0][1])
        assert client.get("/v1/account").json()["balance_micro"] == (
            START_BALANCE_MICRO - ECHO_PRICE_MICRO
        )


def test_cancel_after_cancels_a_running_job(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        started = time.monotonic()
        answer = client.post(
            "/v1/models/echo/run",
            json=_echo(input={"latency_ms": 10000}, sync=False),
            headers={"Cancel-After": "1"},
        )
        assert answer.status_code == 202, answer.text
        job = wait_for_job(client, answer.json()["id"], timeout_s=8)
        assert job["status"] == "cancelled"
        assert time.monotonic() - started < 8
        assert job["cost"]["cost_micro"] == 0
        assert job["completed_at"] is not None
        account_view = client.get("/v1/account").json()
        assert account_view["balance_micro"] == START_BALANCE_MICRO
        assert account_view["reserved_micro"] == 0
