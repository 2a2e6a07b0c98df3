"""Every refusal answers in the one error shape of SPEC §2, with the right status and
code, and a refused submit leaves no job and no reservation behind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, assert_error


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


def _assert_nothing_happened(client: httpx.Client, balance_micro: int) -> None:
    """No job was created and nothing was reserved or charged."""
    assert client.get("/v1/jobs").json()["jobs"] == []
    account = client.get("/v1/account").json()
    assert account["balance_micro"] == balance_micro
    assert account["reserved_micro"] == 0
    kinds = [entry["kind"] for entry in client.get("/v1/account/ledger").json()["entries"]]
    assert "reserve" not in kinds


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("GET", "/"),
        ("POST", "/v2/models/echo/run"),
        ("GET", "/v1/jobs/job_x/nope"),
    ],
)
def test_unknown_route_is_404(
    server: ServerProcess, account: dict[str, str], method: str, path: str
) -> None:
    with server.client(account["api_key"]) as client:
        assert_error(client.request(method, path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/account"),
        ("POST", "/v1/account"),
        ("GET", "/v1/images/generations"),
        ("PATCH", "/v1/jobs/job_01a224703789731cbbbbd7a82be0b3c3"),
        ("GET", "/v1/jobs/job_01a224703789731cbbbbd7a82be0b3c3/cancel"),
        ("POST", "/healthz"),
    ],
)
def test_wrong_method_on_a_known_path_is_404(
    server: ServerProcess, account: dict[str, str], method: str, path: str
) -> None:
    with server.client(account["api_key"]) as client:
        assert_error(client.request(method, path), 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [b'{"input": {"prompt": "x"}', b"not json", b'{"input": {"prompt": "x"}}}', b""],
    ids=["truncated", "not-json", "trailing-garbage", "empty"],
)
def test_malformed_json_is_400(server: ServerProcess, account: dict[str, str], body: bytes) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/echo/run", content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(answer, 400, "invalid_request")
        _assert_nothing_happened(client, 10_000_000)


@pytest.mark.parametrize(
    "body",
    [
        {"input": {"prompt": "x"}, "sync": "yes"},
        {"input": {"prompt": "x"}, "sync": 1},
        {"input": {"prompt": "x"}, "priority": 11},
        {"input": {"prompt": "x"}, "priority": -11},
        {"input": {"prompt": "x"}, "priority": "high"},
        {"input": {"prompt": "x"}, "priority": 1.5},
        {"input": {"prompt": "x"}, "timeout_s": 0},
        {"input": {"prompt": "x"}, "tags": [{"key": "a"}]},
        {"input": {"prompt": "x"}, "tags": "a:b"},
        {"input": {"prompt": "x"}, "webhook_events": ["job.started"]},
        {"input": {"prompt": "x"}, "metadata": []},
        {"input": "a prompt"},
        {"input": {"prompt": "x"}, "unknown_envelope_field": 1},
        [{"input": {"prompt": "x"}}],
    ],
    ids=[
        "sync-string",
        "sync-int",
        "priority-11",
        "priority-minus-11",
        "priority-string",
        "priority-float",
        "timeout-zero",
        "tag-without-value",
        "tags-string",
        "unknown-event",
        "metadata-list",
        "input-string",
        "unknown-field",
        "body-list",
    ],
)
def test_wrong_envelope_is_400(server: ServerProcess, account: dict[str, str], body: Any) -> None:
    with server.client(account["api_key"]) as client:
        error = assert_error(client.post("/v1/models/echo/run", json=body), 400, "invalid_request")
        assert error["details"]["errors"], error
        _assert_nothing_happened(client, 10_000_000)


def test_wrong_envelope_on_a_modality_endpoint_is_400(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        for body in (
            {"prompt": "x", "priority": "high"},
            {"prompt": "x", "sync": "no"},
            {"prompt": "x", "model": ""},
        ):
            answer = client.post("/v1/images/generations", json=body)
            assert_error(answer, 400, "invalid_request")
        _assert_nothing_happened(client, 10_000_000)


@pytest.mark.parametrize(
    ("model_input", "path"),
    [
        ({}, "(root)"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "latency_ms": -1}, "latency_ms"),
        ({"prompt": "x", "latency_ms": "slow"}, "latency_ms"),
        ({"prompt": "x", "colour": "red"}, "(root)"),
    ],
    ids=["missing-prompt", "empty-prompt", "negative-latency", "latency-string", "unknown-field"],
)
def test_input_breaking_the_model_schema_is_422_with_details(
    server: ServerProcess, account: dict[str, str], model_input: dict[str, Any], path: str
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json={"input": model_input})
        error = assert_error(answer, 422, "invalid_input")
        problems = error["details"]["errors"]
        assert any(problem["path"] == path for problem in problems), problems
        assert all(problem["message"] for problem in problems)
        _assert_nothing_happened(client, 10_000_000)


def test_modality_input_breaking_the_model_schema_is_422(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/images/generations", json={"prompt": "x", "width": 10})
        error = assert_error(answer, 422, "invalid_input")
        assert [problem["path"] for problem in error["details"]["errors"]] == ["width"]
        answer = client.post("/v1/images/generations", json={"prompt": "x", "stlye": "oil"})
        assert_error(answer, 422, "invalid_input")
        _assert_nothing_happened(client, 10_000_000)


@pytest.mark.parametrize("seed", [2**64, 2**70, -(2**64)])
def test_an_integer_beyond_64_bits_in_the_input_is_refused_not_500(
    server: ServerProcess, account: dict[str, str], seed: int
) -> None:
    """A number no JSON column can hold is the client's error, named in the answer:
    refused as an invalid request, or as input breaking the schema (`seed` allows
    0 to 2**32 - 1) - never an unexpected server error."""
    with server.client(account["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json={"input": {"prompt": "x", "seed": seed}})
        assert answer.status_code in (400, 422), answer.text
        code = "invalid_request" if answer.status_code == 400 else "invalid_input"
        error = assert_error(answer, answer.status_code, code)
        assert "seed" in str(error["details"]), error
        _assert_nothing_happened(client, 10_000_000)


def test_a_huge_integer_in_metadata_is_never_a_500(
    server: ServerProcess, account: dict[str, str]
) -> None:
    """Whatever the API decides about such metadata, a client's body is not an
    unexpected server error: it is accepted, or refused as an invalid request."""
    with server.client(account["api_key"]) as client:
        body = {"input": {"prompt": "x"}, "metadata": {"order": 2**70}}
        answer = client.post("/v1/models/echo/run", json=body)
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:
            assert_error(answer, 400, "invalid_request")


@pytest.mark.parametrize("model", ["nope", "fal-ai/flux/schnell", "ECHO", "echo/"])
def test_unknown_model_is_404(server: ServerProcess, account: dict[str, str], model: str) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(f"/v1/models/{model}/run", json={"input": {"prompt": "x"}})
        assert_error(answer, 404, "not_found")
        assert_error(client.get(f"/v1/models/{model}"), 404, "not_found")
        answer = client.post("/v1/images/generations", json={"model": model, "prompt": "x"})
        assert_error(answer, 404, "not_found")
        _assert_nothing_happened(client, 10_000_000)


def test_content_policy_refusal_is_451_and_creates_no_job(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/echo/run", json={"input": {"prompt": "something Forbidden here"}}
        )
        error = assert_error(answer, 451, "content_rejected")
        assert error["details"] == {"field": "prompt"}
        answer = client.post("/v1/images/generations", json={"prompt": "forbidden", "sync": False})
        assert_error(answer, 451, "content_rejected")
        _assert_nothing_happened(client, 10_000_000)
        # A word that merely contains the blocked one is allowed.
        allowed = client.post("/v1/models/echo/run", json={"input": {"prompt": "unforbiddenly"}})
        assert allowed.status_code == 200, allowed.text


def test_no_credits_is_402_and_creates_no_job(server: ServerProcess) -> None:
    broke = server.create_account("broke", credits=0)
    with server.client(broke["api_key"]) as client:
        answer = client.post("/v1/models/echo/run", json={"input": {"prompt": "x"}})
        error = assert_error(answer, 402, "insufficient_credits")
        assert error["details"] == {"required_micro": 1000, "available_micro": 0}
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
        assert_error(answer, 402, "insufficient_credits")
        _assert_nothing_happened(client, 0)


def test_402_counts_reservations_not_just_the_balance(server: ServerProcess) -> None:
    """Available = balance - reserved: a job in flight holds its credits."""
    poor = server.create_account("poor", credits=1)  # one local-image job's worth
    with server.client(poor["api_key"]) as client:
        slow = {"input": {"prompt": "x", "latency_ms": 20000}, "sync": False}
        first = client.post("/v1/models/echo/run", json=slow)
        assert first.status_code == 202, first.text
        answer = client.post("/v1/images/generations", json={"prompt": "x"})
        error = assert_error(answer, 402, "insufficient_credits")
        assert error["details"] == {"required_micro": 10_000, "available_micro": 9_000}
        assert client.post(f"/v1/jobs/{first.json()['id']}/cancel").status_code == 200
        small = {"prompt": "x", "width": 64, "height": 64}
        again = client.post("/v1/images/generations", json=small)
        assert again.status_code == 202, again.text


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "not a url",
    ],
)
def test_refused_webhook_url_is_422_and_creates_no_job(
    server: ServerProcess, account: dict[str, str], url: str
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/echo/run", json={"input": {"prompt": "x"}, "webhook_url": url}
        )
        assert_error(answer, 422, "invalid_input")
        answer = client.post("/v1/images/generations", json={"prompt": "x", "webhook_url": url})
        assert_error(answer, 422, "invalid_input")
        _assert_nothing_happened(client, 10_000_000)


def test_a_body_over_the_size_limit_is_400(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        huge = b'{"input": {"prompt": "' + b"x" * (4 * 1024 * 1024 + 10) + b'"}}'
        answer = client.post(
            "/v1/models/echo/run", content=huge, headers={"Content-Type": "application/json"}
        )
        error = assert_error(answer, 400, "invalid_request")
        assert error["details"] == {"max_body_bytes": 4 * 1024 * 1024}
        _assert_nothing_happened(client, 10_000_000)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-5",
        "cursor=abc",
        "cursor=!!!!",
        "cursor=" + "A" * 101,
        "status=done",
        "tag=novalue",
        "tag=:v",
        "created_after=yesterday",
        "created_after=2026-01-01T00:00:00",
    ],
)
def test_bad_list_query_parameters_are_400(
    server: ServerProcess, account: dict[str, str], query: str
) -> None:
    with server.client(account["api_key"]) as client:
        assert_error(client.get(f"/v1/jobs?{query}"), 400, "invalid_request")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "cursor=abc"])
def test_bad_ledger_query_parameters_are_400(
    server: ServerProcess, account: dict[str, str], query: str
) -> None:
    with server.client(account["api_key"]) as client:
        assert_error(client.get(f"/v1/account/ledger?{query}"), 400, "invalid_request")


@pytest.mark.parametrize(
    ("name", "value"),
    [("Cancel-After", "soon"), ("Cancel-After", "-1"), ("Idempotency-Key", "k" * 256)],
)
def test_bad_submit_headers_are_400(
    server: ServerProcess, account: dict[str, str], name: str, value: str
) -> None:
    with server.client(account["api_key"]) as client:
        answer = client.post(
            "/v1/models/echo/run", json={"input": {"prompt": "x"}}, headers={name: value}
        )
        assert_error(answer, 400, "invalid_request")
        _assert_nothing_happened(client, 10_000_000)
