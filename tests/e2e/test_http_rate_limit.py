"""Per-key token buckets: a server limited to 5 requests a minute."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.server import ServerProcess, assert_error, start_server

LIMIT = 5
PERIOD_S = 60
POLICY = re.compile(r'^"(?P<name>[^"]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
STATE = re.compile(r'^"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("limited"), settings={"rate_limit": f"{LIMIT}/minute"}
    )
    try:
        yield process
    finally:
        process.stop()


def _state(answer: httpx.Response) -> tuple[int, int]:
    """(remaining, seconds to full) from the RateLimit headers, after checking the policy."""
    policy = POLICY.match(answer.headers["ratelimit-policy"])
    assert policy, answer.headers["ratelimit-policy"]
    assert (int(policy["q"]), int(policy["w"])) == (LIMIT, PERIOD_S)
    state = STATE.match(answer.headers["ratelimit"])
    assert state, answer.headers["ratelimit"]
    assert state["name"] == policy["name"]
    return int(state["r"]), int(state["t"])


def test_the_request_after_the_burst_is_429_with_headers(limited: ServerProcess) -> None:
    account = limited.create_account()
    with limited.client(account["api_key"]) as client:
        answers = [client.get("/v1/account") for _ in range(LIMIT)]
        assert [answer.status_code for answer in answers] == [200] * LIMIT
        remaining = [_state(answer)[0] for answer in answers]
        assert remaining == list(range(LIMIT - 1, -1, -1))

        refused = client.get("/v1/account")
        assert_error(refused, 429, "rate_limited")
        retry_after = int(refused.headers["retry-after"])
        # One token comes back every 12 s at 5/minute.
        assert 1 <= retry_after <= PERIOD_S // LIMIT
        assert _state(refused)[0] == 0
        # Every kind of request draws on the same bucket.
        submit = client.post("/v1/models/echo/run", json={"input": {"prompt": "x"}})
        assert_error(submit, 429, "rate_limited")
        assert client.get("/v1/jobs").status_code == 429
        # A refused submit created nothing (seen from a second key of the same account).
        fresh_key = limited.create_key(account["account_id"])["api_key"]
    with limited.client(fresh_key) as client:
        # ...and that other key has a bucket of its own.
        jobs = client.get("/v1/jobs")
        assert jobs.status_code == 200, jobs.text
        assert jobs.json()["jobs"] == []
        assert _state(jobs)[0] == LIMIT - 1


def test_another_account_has_its_own_bucket(limited: ServerProcess) -> None:
    first, second = limited.create_account("one"), limited.create_account("two")
    with limited.client(first["api_key"]) as one, limited.client(second["api_key"]) as two:
        for _ in range(LIMIT):
            assert one.get("/v1/account").status_code == 200
        assert one.get("/v1/account").status_code == 429
        answer = two.get("/v1/account")
        assert answer.status_code == 200
        assert _state(answer)[0] == LIMIT - 1


def test_public_endpoints_and_file_links_are_not_limited(limited: ServerProcess) -> None:
    account = limited.create_account()
    with limited.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "x"}}).json()
        statuses = [client.get("/v1/account").status_code for _ in range(LIMIT)]
        assert statuses == [200] * (LIMIT - 1) + [429]
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", job["result"]["url"]):
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert "ratelimit" not in answer.headers
