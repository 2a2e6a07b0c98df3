"""Webhooks through a real `gengate serve` process: jobs submitted over HTTP, events
delivered to real receivers on 127.0.0.1 and verified with the `standardwebhooks`
package, the delivery log and retry endpoints, secret rotation from the CLI, a
receiver that hangs, and a crash between a job's end and its webhook."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.server import (
    GENGATE,
    TEST_SETTINGS,
    ServerProcess,
    assert_error,
    start_server,
    wait_for_job,
    write_config,
)
from tests.integration.test_webhooks_receiver import Answer, Receiver

pytestmark = [pytest.mark.e2e]

#: A compressed retry schedule (the default spans three days).
SCHEDULE_ENV = {"GENGATE_WEBHOOKS_RETRY_SCHEDULE_S": "[0, 0.3, 0.3, 0.3, 0.3]"}
SETTINGS: dict[str, Any] = {
    "webhooks_allow_private": True,  # the receivers listen on 127.0.0.1
    "webhooks_jitter": 0.0,
    # Long enough that a receiver hanging for 30 s really holds its attempt that long.
    "webhooks_timeout_s": 60.0,
}
MODELS = {"echo": {"sync_window_s": 10, "params": {"max_latency_ms": 60000}}}
WAIT_S = 20.0
DELIVERY_FIELDS = {
    "id",
    "webhook_id",
    "event_type",
    "attempt",
    "status_code",
    "error",
    "latency_ms",
    "response_body",
    "created_at",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("webhooks"), settings=SETTINGS, models=MODELS, env=SCHEDULE_ENV
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def account(server: ServerProcess) -> dict[str, str]:
    return server.create_account()


@pytest.fixture
def client(server: ServerProcess, account: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client(account["api_key"]) as http:
        yield http


def run(client: httpx.Client, url: str | None, **model_input: Any) -> dict[str, Any]:
    """A sync echo job with a webhook; the finished job record."""
    body: dict[str, Any] = {"input": {"prompt": "e2e webhook", **model_input}}
    if url is not None:
        body["webhook_url"] = url
    answer = client.post("/v1/models/echo/run", json=body)
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    return job


def wait_for_webhook(client: httpx.Client, job_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["webhook"]["status"] == status:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"webhook of {job_id} still {job['webhook']} after {WAIT_S} s")
        time.sleep(0.05)


def test_a_webhook_arrives_signed_for_the_accounts_secret(
    client: httpx.Client, account: dict[str, str]
) -> None:
    with Receiver() as receiver:
        job = run(client, receiver.url())
        (request,) = receiver.wait_for_sync(1, timeout_s=WAIT_S)
        done = wait_for_webhook(client, job["id"], "delivered")
    payload = Webhook(account["webhook_secret"]).verify(request.body, request.headers)
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"]
    assert payload["data"]["result"]["url"].startswith("http://127.0.0.1:")
    assert done["webhook"] == {"url": receiver.url(), "status": "delivered", "attempts": 1}

    answer = client.get(f"/v1/jobs/{job['id']}/webhook-deliveries")
    assert answer.status_code == 200
    (delivery,) = answer.json()["deliveries"]
    assert set(delivery) == DELIVERY_FIELDS
    assert delivery["webhook_id"] == request.headers["webhook-id"]
    assert delivery["status_code"] == 200
    assert delivery["attempt"] == 1
    assert delivery["event_type"] == "job.succeeded"


def test_failing_twice_then_answering_gets_the_same_webhook_id_three_times(
    client: httpx.Client,
) -> None:
    with Receiver([Answer(500), Answer(500)]) as receiver:
        job = run(client, receiver.url())
        done = wait_for_webhook(client, job["id"], "delivered")
        requests = receiver.received()
    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert [r.headers["gengate-webhook-attempt"] for r in requests] == ["1", "2", "3"]
    assert done["webhook"]["attempts"] == 3
    deliveries = client.get(f"/v1/jobs/{job['id']}/webhook-deliveries").json()["deliveries"]
    assert [d["status_code"] for d in deliveries] == [500, 500, 200]


def test_a_retry_resends_the_same_event_and_other_accounts_see_nothing(
    server: ServerProcess, client: httpx.Client
) -> None:
    with Receiver([Answer(410)]) as receiver:
        job = run(client, receiver.url())
        wait_for_webhook(client, job["id"], "failed")
        answer = client.post(f"/v1/jobs/{job['id']}/webhook-deliveries/retry")
        assert answer.status_code == 202, answer.text
        assert answer.json()["id"] == job["id"]
        assert answer.json()["webhook"]["status"] == "pending"
        done = wait_for_webhook(client, job["id"], "delivered")
        first, second = receiver.received()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert done["webhook"]["attempts"] == 2

    stranger = server.create_account("stranger")
    with server.client(stranger["api_key"]) as other:
        assert_error(other.get(f"/v1/jobs/{job['id']}/webhook-deliveries"), 404, "not_found")
        assert_error(other.post(f"/v1/jobs/{job['id']}/webhook-deliveries/retry"), 404, "not_found")
    assert_error(client.get("/v1/jobs/job_nonsense/webhook-deliveries"), 404, "not_found")

    plain = run(client, None)
    assert client.get(f"/v1/jobs/{plain['id']}/webhook-deliveries").json() == {"deliveries": []}
    assert_error(client.post(f"/v1/jobs/{plain['id']}/webhook-deliveries/retry"), 409, "conflict")


def test_a_rotated_secret_signs_beside_the_old_one(
    server: ServerProcess, client: httpx.Client, account: dict[str, str]
) -> None:
    result = server.cli("accounts", "rotate-webhook-secret", account["account_id"], "--json")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    rotated = json.loads(line)
    assert rotated["account_id"] == account["account_id"]
    assert rotated["webhook_secret"].startswith("whsec_")
    assert rotated["webhook_secret"] != account["webhook_secret"]
    assert rotated["previous_secret_expires_at"].endswith("Z")
    with Receiver() as receiver:
        run(client, receiver.url())
        (request,) = receiver.wait_for_sync(1, timeout_s=WAIT_S)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (account["webhook_secret"], rotated["webhook_secret"]):
        Webhook(secret).verify(request.body, request.headers)

    unknown = server.cli("accounts", "rotate-webhook-secret", "acct_" + "0" * 32, "--json")
    assert unknown.returncode == 1
    assert "No account" in unknown.stderr


def test_a_receiver_that_hangs_delays_no_job_no_cancellation_and_no_other_delivery(
    client: httpx.Client,
) -> None:
    # Each step below takes well under a second here; the hanging receiver holds its
    # attempt for 30 s. A step that waited on the hang would take that long.
    step_limit_s = 5.0
    with Receiver([Answer(hang_s=30)]) as hanging, Receiver() as healthy:
        stuck = run(client, hanging.url())
        hanging.wait_for_sync(1, timeout_s=WAIT_S)
        hang_started = time.monotonic()

        started = time.monotonic()
        other = run(client, healthy.url())
        assert other["status"] == "succeeded"
        healthy.wait_for_sync(1, timeout_s=step_limit_s)
        assert time.monotonic() - started < step_limit_s

        slow = client.post(
            "/v1/models/echo/run",
            json={"input": {"prompt": "to cancel", "latency_ms": 60000}, "sync": False},
        ).json()
        wait_for_job(client, slow["id"], statuses={"running"}, timeout_s=step_limit_s)
        started = time.monotonic()
        cancelled = client.post(f"/v1/jobs/{slow['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert time.monotonic() - started < step_limit_s

        # All of that happened while the first attempt was still waiting for its answer.
        assert time.monotonic() - hang_started < 30
        assert len(hanging.received()) == 1
        deliveries = client.get(f"/v1/jobs/{stuck['id']}/webhook-deliveries").json()
        assert deliveries == {"deliveries": []}
        assert client.get(f"/v1/jobs/{stuck['id']}").json()["webhook"]["status"] == "pending"


def test_a_crash_between_the_jobs_end_and_its_webhook_loses_nothing(tmp_path: Path) -> None:
    """The job finishes while delivery is paused; the process is killed (SIGKILL); once
    restarted with delivery on, the webhook arrives from the outbox."""
    paused = {**SETTINGS, "webhooks_deliver": False}
    server = start_server(tmp_path, settings=paused, models=MODELS, env=SCHEDULE_ENV)
    try:
        account = server.create_account()
        with Receiver() as receiver, server.client(account["api_key"]) as client:
            job = run(client, receiver.url())
            assert job["status"] == "succeeded"
            assert job["webhook"]["status"] == "pending"
            time.sleep(1.0)
            assert receiver.received() == []  # nothing sends while delivery is paused

            server.stop(signal.SIGKILL)
            write_config(server.config_path, {**TEST_SETTINGS, **SETTINGS}, MODELS)
            server.start()

            (request,) = receiver.wait_for_sync(1, timeout_s=WAIT_S)
            done = wait_for_webhook(client, job["id"], "delivered")
        payload = Webhook(account["webhook_secret"]).verify(request.body, request.headers)
        assert payload["data"]["id"] == job["id"]
        assert done["webhook"]["attempts"] == 1
    finally:
        server.stop()


def test_a_worker_process_delivers_webhooks_too(tmp_path: Path) -> None:
    """Split mode: `serve --no-workers` with delivery off, and a `gengate worker` that
    runs the job and delivers its webhook."""
    api_only = {**SETTINGS, "webhooks_deliver": False}
    server = start_server(
        tmp_path, settings=api_only, models=MODELS, env=SCHEDULE_ENV, args=("--no-workers",)
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            *GENGATE,
            "worker",
            "--data-dir",
            str(server.data_dir),
            "--config",
            str(server.config_path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **SCHEDULE_ENV, "GENGATE_WEBHOOKS_DELIVER": "true"},
    )
    try:
        account = server.create_account()
        with Receiver() as receiver, server.client(account["api_key"]) as client:
            answer = client.post(
                "/v1/models/echo/run",
                json={"input": {"prompt": "split"}, "sync": False, "webhook_url": receiver.url()},
            )
            assert answer.status_code == 202, answer.text
            (request,) = receiver.wait_for_sync(1, timeout_s=60)
            done = wait_for_webhook(client, answer.json()["id"], "delivered")
        payload = Webhook(account["webhook_secret"]).verify(request.body, request.headers)
        assert payload["data"]["status"] == "succeeded"
        assert done["webhook"]["attempts"] == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()
        server.stop()
