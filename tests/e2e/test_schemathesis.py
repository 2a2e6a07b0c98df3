"""The served OpenAPI document, held against a real server process by schemathesis.

Three parts, all against one `gengate serve` with a test configuration (echo answers
within 200 ms and its sync window is 1 s, so no request can hold the run for long):

- generated requests for every operation (coverage and fuzzing, valid and invalid
  data), told the names of real models and jobs so that most get past the 404;
- stateful sequences along the links schemathesis infers between operations;
- hand-written requests for what generated data rarely reaches (finished jobs, files,
  304, 402, 409, pages) and for the crashes the generated requests once found.

Every answer must be free of server errors and match the document: status code,
content type, headers and body.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import CheckFunction, Response
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema

from tests.e2e.server import ServerProcess, start_server

# A generated or hand-made request to one of the document's operations.
Case = schemathesis.Case[Any]

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("cpu_heavy")]

# What the server is held to. Left out, each for a reason:
# - positive_data_acceptance: a schema-valid request may rightly be refused. The
#   model's input is a free-form object in the document, checked against that model's
#   own JSON Schema (422); `cursor` is an opaque string only the server mints (400).
# - negative_data_rejection: query timestamps are parsed leniently (a Unix time passes
#   for `date-time`); lenient, not wrong, and not a crash.
# - unsupported_method: an unknown method on a known path answers 404 `not_found` by
#   design (one answer for "no such route"), where the check wants 405.
# - use_after_free, ensure_resource_availability: cancelling is the only "delete", and
#   a cancelled job is rightly still there to read.
CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
# ~1,800 requests in all (the coverage phase adds its own boundary cases): ~20 s here.
EXAMPLES_PER_OPERATION = 20
STATEFUL_SCENARIOS = 15
REQUEST_TIMEOUT_S = 10.0  # a sync submit waits at most echo's 1 s window
# The account event stream never ends by itself: read its head, then give up on it.
ENDLESS_STREAM_S = 1.0


def timeout_for(case: Case) -> float:
    return ENDLESS_STREAM_S if case.path == "/v1/events" else REQUEST_TIMEOUT_S


TEST_MODELS = {"echo": {"sync_window_s": 1, "params": {"max_latency_ms": 200}}}
RICH_CREDITS = Decimal(1_000_000)
RUN = "/v1/models/{model}/run"
ECHO = {"model": "echo"}


class Api:
    """Requests built from the document's own operations, answered and validated."""

    def __init__(self, server: ServerProcess, api_key: str, schema: BaseSchema) -> None:
        self.server = server
        self.schema = schema
        self.auth = {"Authorization": f"Bearer {api_key}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        **parts: Any,
    ) -> Response:
        """One request to `method path`; `parts` are those of a schemathesis `Case`
        (path_parameters, query, body). Answer headers map each name to a list."""
        sent = {**(self.auth if auth else {}), **(headers or {})}
        case: Case = self.schema[path][method].Case(headers=sent, **parts)
        return case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)

    def run_echo(self, body: dict[str, Any], **kwargs: Any) -> Response:
        return self.call("POST", RUN, path_parameters=ECHO, body=body, **kwargs)

    def job(self, job_id: str, **kwargs: Any) -> Response:
        return self.call("GET", "/v1/jobs/{id}", path_parameters={"id": job_id}, **kwargs)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(tmp_path_factory.mktemp("schemathesis"), models=TEST_MODELS)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def api_key(api_server: ServerProcess) -> str:
    return api_server.create_account("schemathesis", credits=RICH_CREDITS)["api_key"]


@pytest.fixture(scope="module")
def known_job_ids(api_server: ServerProcess, api_key: str) -> list[str]:
    """A succeeded, a failed and a cancelled job, so that generated requests reach real
    records; and one of them as a bare UUID, which every endpoint also takes."""
    ids = []
    with api_server.client(api_key) as client:
        for model_input in ({"prompt": "ok"}, {"prompt": "no", "fail": True}):
            answer = client.post("/v1/models/echo/run", json={"input": model_input})
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
        slow = {"input": {"prompt": "slow", "latency_ms": 200}, "sync": False}
        queued = client.post("/v1/models/echo/run", json=slow).json()["id"]
        assert client.post(f"/v1/jobs/{queued}/cancel").status_code in (200, 409)
        ids.append(queued)
    return [*ids, ids[0].removeprefix("job_")]


@pytest.fixture(scope="module")
def api_schema(api_server: ServerProcess, api_key: str, known_job_ids: list[str]) -> BaseSchema:
    config = SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": f"Bearer {api_key}"},
            "request-timeout": REQUEST_TIMEOUT_S,
            # Failing examples are not kept between runs: each run stands alone.
            "generation": {"database": "none"},
            # Most of the time, name a model or job that exists, so that the request gets
            # past the 404 to the code behind it; otherwise, anything goes.
            "dictionaries": {
                "models": {"values": ["echo", "local-image"]},
                "jobs": {"values": known_job_ids},
            },
            "parameters": {
                "path.model": {"dictionary": "models", "probability": 0.7},
                "body.model": {"dictionary": "models", "probability": 0.7},
                "path.id": {"dictionary": "jobs", "probability": 0.7},
            },
        }
    )
    return schemathesis.openapi.from_url(f"{api_server.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def api(api_server: ServerProcess, api_key: str, api_schema: BaseSchema) -> Api:
    return Api(api_server, api_key, api_schema)


@pytest.fixture
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """pytest 9.2 keeps a node's id in `_id`; the lazy loader of schemathesis 4.32 still
    reads (and rewrites, for its report) the former private `_nodeid`. Give it one."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@pytest.mark.usefixtures("node_id_for_schemathesis")
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    # Many generated requests are rightly refused (4xx); that is not a problem here.
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
def test_generated_requests(case: Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=timeout_for(case))


def test_stateful_sequences(api_schema: BaseSchema) -> None:
    """Chains that pass one answer's values on (a listed model's id → that model)."""
    machine = api_schema.as_state_machine()

    class Validated(machine):  # type: ignore[misc,valid-type]
        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"timeout": timeout_for(case)}

    Validated.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


# -- hand-written requests --------------------------------------------------------------


def wait_terminal(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20  # echo finishes within 200 ms
    while True:
        job: dict[str, Any] = api.job(job_id).json()
        if job["status"] in {"succeeded", "partial", "failed", "cancelled"}:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def test_job_life_answers_match_the_document(api: Api) -> None:
    done = api.run_echo({"input": {"prompt": "hello"}, "tags": [{"key": "suite", "value": "st"}]})
    assert done.status_code == 200
    job = done.json()
    assert job["status"] == "succeeded"

    failed = api.run_echo({"input": {"prompt": "x", "fail": True}})
    assert failed.status_code == 200
    assert failed.json()["error"]["code"] == "provider_error"

    slow = {"input": {"prompt": "slow", "latency_ms": 200}, "sync": False, "priority": 3}
    queued = api.run_echo(slow)
    assert queued.status_code == 202
    queued_id = {"id": queued.json()["id"]}
    cancelled = api.call("POST", "/v1/jobs/{id}/cancel", path_parameters=queued_id)
    assert cancelled.status_code in (200, 409)  # 409 should it have finished in between
    assert api.call("DELETE", "/v1/jobs/{id}", path_parameters=queued_id).status_code == 409

    image = api.call("POST", "/v1/images/generations", body={"model": "echo", "prompt": "sun"})
    assert image.status_code == 202
    wait_terminal(api, image.json()["id"])

    got = api.job(job["id"])
    assert got.status_code == 200
    unchanged = api.job(job["id"], headers={"If-None-Match": got.headers["etag"][0]})
    assert unchanged.status_code == 304
    assert api.job(job["id"].removeprefix("job_")).status_code == 200

    tagged = api.call("GET", "/v1/jobs", query={"limit": 1, "tag": ["suite:st"]}).json()
    assert [listed["id"] for listed in tagged["jobs"]] == [job["id"]]
    page = api.call("GET", "/v1/jobs", query={"limit": 1}).json()
    assert page["has_more"] is True
    api.call("GET", "/v1/jobs", query={"limit": 1, "cursor": page["cursor"]})
    api.call("GET", "/v1/jobs", query={"status": "failed", "created_after": "2020-01-01T00:00Z"})

    link = httpx.URL(job["result"]["url"])
    file_parts = {
        "path_parameters": {"key": link.path.removeprefix("/v1/files/")},
        "query": dict(link.params),
    }
    assert api.call("GET", "/v1/files/{key}", auth=False, **file_parts).status_code == 200
    part = api.call(
        "GET", "/v1/files/{key}", auth=False, headers={"Range": "bytes=0-9"}, **file_parts
    )
    assert part.status_code == 206
    assert len(part.content) == 10


def test_account_and_catalog_answers_match_the_document(api: Api) -> None:
    api.run_echo({"input": {"prompt": "x"}})
    account = api.call("GET", "/v1/account").json()
    assert account["balance_micro"] < int(RICH_CREDITS) * 10_000
    ledger = api.call("GET", "/v1/account/ledger", query={"limit": 2}).json()
    assert ledger["has_more"] is True
    api.call("GET", "/v1/account/ledger", query={"limit": 2, "cursor": ledger["cursor"]})
    for model in api.call("GET", "/v1/models").json()["models"]:
        api.call("GET", "/v1/models/{model}", path_parameters={"model": model["id"]})
    for path in ("/healthz", "/readyz", "/metrics"):
        assert api.call("GET", path, auth=False).status_code == 200


def test_refusals_match_the_document(api: Api) -> None:
    poor_key = api.server.create_account("poor", credits=0)["api_key"]
    poor = {"Authorization": f"Bearer {poor_key}"}
    assert api.run_echo({"input": {"prompt": "x"}}, auth=False, headers=poor).status_code == 402
    assert api.call("GET", "/v1/account", auth=False).status_code == 401
    key = {"Idempotency-Key": "st-idem-1"}
    assert api.run_echo({"input": {"prompt": "x"}}, headers=key).status_code == 200
    assert api.run_echo({"input": {"prompt": "y"}}, headers=key).status_code == 409
    assert api.run_echo({"input": {"prompt": "x", "bogus": 1}}).status_code == 422
    assert api.call("GET", "/v1/jobs", query={"cursor": "not-a-cursor"}).status_code == 400
    assert api.job("job_nope").status_code == 404
    forged = {"path_parameters": {"key": "abc/0-0.png"}, "query": {"expires": "1", "sig": "x"}}
    assert api.call("GET", "/v1/files/{key}", auth=False, **forged).status_code == 403


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Crashes (500) that generated requests found; pinned so every run checks them.
UNSTORABLE_BODIES = {
    # JSON allows any integer; the JSON encoder behind fingerprints, rows and answers
    # stops at 64 bits.
    "integer beyond 64 bits in metadata": {"input": {"prompt": "x"}, "metadata": {"n": 2**70}},
    "integer beyond 64 bits in input": {"input": {"prompt": "x", "seed": 2**70}},
    # A lone UTF-16 surrogate is legal JSON text (as an escape) but has no UTF-8 form.
    "lone surrogate in input": {"input": {"prompt": "\ud800"}},
    "lone surrogate in metadata": {"input": {"prompt": "x"}, "metadata": {"k": "\udfff"}},
    # The same encoder refuses more than 255 levels of nesting.
    "nesting 300 levels deep": {"input": {"prompt": "x"}, "metadata": {"n": nested(300)}},
}


@pytest.mark.parametrize("body", UNSTORABLE_BODIES.values(), ids=UNSTORABLE_BODIES.keys())
def test_unstorable_json_values_are_refused_not_crashed(api: Api, body: dict[str, Any]) -> None:
    answer = api.run_echo(body)
    assert answer.status_code in (400, 422), answer.text


@pytest.mark.parametrize(
    "query",
    [
        {"created_after": "9999-12-31T23:59:59-14:00"},
        {"created_before": "0001-01-01T00:00:00+14:00"},
    ],
    ids=["after-the-last-utc-day", "before-the-first-utc-day"],
)
def test_timestamps_at_the_calendar_edges_are_refused_not_crashed(
    api: Api, query: dict[str, str]
) -> None:
    # Out of the datetime range once moved to UTC: 400, or 200 if clamped; never 500.
    assert api.call("GET", "/v1/jobs", query=query).status_code in (200, 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused(
    api_server: ServerProcess, api_key: str, literal: str
) -> None:
    """Not JSON (RFC 8259), so SPEC §2's 400 for malformed JSON — not stored as null.
    Sent as raw text: a JSON encoder will not write them."""
    raw = '{"input": {"prompt": "x"}, "metadata": {"n": ' + literal + '}, "sync": false}'
    answer = httpx.post(
        f"{api_server.url}/v1/models/echo/run",
        content=raw.encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
