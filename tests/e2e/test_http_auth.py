"""Authentication, public endpoints, request ids, metrics and the OpenAPI document,
over real HTTP against a real server process."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import ServerProcess, assert_error, wait_for_job


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


PUBLIC_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/dashboard")
AUTHED_GETS = ("/v1/account", "/v1/account/ledger", "/v1/jobs", "/v1/models", "/v1/models/echo")


@pytest.mark.parametrize("path", AUTHED_GETS)
def test_no_key_is_401_in_the_error_shape(server: ServerProcess, path: str) -> None:
    with server.client() as client:
        assert_error(client.get(path), 401, "unauthorized")


def test_submit_without_a_key_is_401_and_creates_nothing(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client() as anonymous:
        answer = anonymous.post("/v1/models/echo/run", json={"input": {"prompt": "x"}})
        assert_error(answer, 401, "unauthorized")
    with server.client(account["api_key"]) as client:
        assert client.get("/v1/jobs").json()["jobs"] == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer gg_live_" + "A" * 43},
        {"X-API-Key": "gg_live_" + "A" * 43},
        {"Authorization": "Bearer gg_live_"},
        {"Authorization": "Bearer"},
        {"Authorization": "gg_live_" + "A" * 43},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": ""},
    ],
    ids=[
        "unknown-bearer",
        "unknown-x-api-key",
        "truncated-key",
        "bare-scheme",
        "no-scheme",
        "basic",
        "empty-x-api-key",
    ],
)
def test_unknown_or_malformed_credentials_are_401(
    server: ServerProcess, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        assert_error(client.get("/v1/account"), 401, "unauthorized")


def test_a_key_of_another_scheme_does_not_authenticate(
    server: ServerProcess, account: dict[str, str]
) -> None:
    """A real key sent under a scheme other than Bearer is not accepted as Bearer."""
    headers = {"Authorization": f"Basic {account['api_key']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        assert_error(client.get("/v1/account"), 401, "unauthorized")


def test_bearer_and_x_api_key_both_authenticate(
    server: ServerProcess, account: dict[str, str]
) -> None:
    for headers in (
        {"Authorization": f"Bearer {account['api_key']}"},
        {"Authorization": f"bearer {account['api_key']}"},
        {"X-API-Key": account["api_key"]},
    ):
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            answer = client.get("/v1/account")
            assert answer.status_code == 200, (headers, answer.text)
            assert answer.json()["id"] == account["account_id"]


def test_revoked_key_is_401_and_the_accounts_other_keys_still_work(
    server: ServerProcess, account: dict[str, str]
) -> None:
    second_key = server.create_key(account["account_id"])["api_key"]
    with server.client(account["api_key"]) as first, server.client(second_key) as second:
        assert first.get("/v1/account").status_code == 200
        assert second.get("/v1/account").status_code == 200
        revoked = server.cli("keys", "revoke", account["key_id"])
        assert revoked.returncode == 0, revoked.stderr
        assert_error(first.get("/v1/account"), 401, "unauthorized")
        answer = first.post("/v1/models/echo/run", json={"input": {"prompt": "x"}})
        assert_error(answer, 401, "unauthorized")
        assert second.get("/v1/account").json()["id"] == account["account_id"]


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_public_endpoints_need_no_key(server: ServerProcess, path: str) -> None:
    with server.client() as client:
        answer = client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"].startswith("req_")


def test_health_and_readiness_bodies(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"] == {"database": True, "schema": True, "workers": True}


def test_every_response_has_a_distinct_request_id(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        answers = [
            client.get("/healthz"),
            client.get("/v1/account"),
            client.get("/v1/nope"),
            client.get("/v1/jobs/job_nope"),
        ]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(rid.startswith("req_") for rid in ids)
    assert len(set(ids)) == len(ids)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def test_metrics_expose_job_gauges_http_latency_and_run_durations(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "metrics"}}).json()
        assert job["status"] == "succeeded"
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
        slow = {"input": {"prompt": "m", "latency_ms": 20000}, "sync": False}
        running = client.post("/v1/models/echo/run", json=slow).json()
        wait_for_job(client, running["id"], statuses={"running"})
        try:
            answer = client.get("/metrics")
        finally:
            client.post(f"/v1/jobs/{running['id']}/cancel")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)

    gauges = {
        (labels["model"], labels["status"]): value
        for name, labels, value in samples
        if name == "gengate_jobs"
    }
    assert gauges[("echo", "running")] >= 1
    assert ("echo", "queued") in gauges
    assert ("local-image", "queued") in gauges

    runs = [
        value
        for name, labels, value in samples
        if name == "gengate_job_run_duration_seconds_count"
        and labels == {"model": "echo", "outcome": "succeeded"}
    ]
    assert runs and runs[0] >= 1

    job_reads = [
        value
        for name, labels, value in samples
        if name == "gengate_http_request_duration_seconds_count"
        and labels.get("route") == "/v1/jobs/{id}"
        and labels.get("method") == "GET"
        and labels.get("status") == "200"
    ]
    assert job_reads and job_reads[0] >= 1


# Every route of SPEC §2 that this build serves, as (method, OpenAPI path).
ROUTES = [
    ("post", "/v1/models/{model}/run"),
    ("post", "/v1/images/generations"),
    ("post", "/v1/videos/generations"),
    ("post", "/v1/audio/music"),
    ("post", "/v1/audio/speech"),
    ("post", "/v1/3d/generations"),
    ("post", "/v1/stories"),
    ("get", "/v1/jobs/{id}"),
    ("get", "/v1/jobs"),
    ("post", "/v1/jobs/{id}/cancel"),
    ("delete", "/v1/jobs/{id}"),
    ("get", "/v1/jobs/{id}/events"),
    ("get", "/v1/events"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{model}"),
    ("get", "/v1/account"),
    ("get", "/v1/account/ledger"),
    ("get", "/v1/files/{key}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
]


def test_openapi_lists_every_route_with_response_schemas(server: ServerProcess) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
    paths = document["paths"]
    schemas = document["components"]["schemas"]
    for method, path in ROUTES:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
        responses = paths[path][method]["responses"]
        successes = [code for code in responses if code.startswith("2")]
        assert successes, f"{method.upper()} {path} documents no success"
        for code in successes:
            content = responses[code].get("content")
            assert content, f"{method.upper()} {path} {code}: no content"
            ref = content.get("application/json", {}).get("schema", {}).get("$ref")
            if ref is not None:
                assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_openapi_documents_every_error_in_the_error_shape(server: ServerProcess) -> None:
    """Clients generated from the document must expect the shape the API really sends:
    every 4xx/5xx response documented refers to the one error schema."""
    with server.client() as client:
        document = client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorBody"
    assert set(document["components"]["schemas"]["ErrorBody"]["required"]) == {
        "error",
        "message",
        "details",
        "request_id",
    }
    wrong = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code[0] not in "45":
                    continue
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": error_ref}:
                    wrong.append(f"{method.upper()} {path} {code}: {schema}")
    assert wrong == []


def test_authenticated_routes_document_401(server: ServerProcess) -> None:
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    public = {"/healthz", "/readyz", "/metrics", "/v1/files/{key}"}
    for method, path in ROUTES:
        if path not in public:
            assert "401" in paths[path][method]["responses"], f"{method.upper()} {path}"
