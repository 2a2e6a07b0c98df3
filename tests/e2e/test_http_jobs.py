"""Reading, listing and cancelling jobs over HTTP, tenant isolation, and the
account's money as GET /v1/account and its ledger show it."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, assert_error, wait_for_job


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
START_BALANCE_MICRO = 10_000_000
ECHO_PRICE_MICRO = 1_000


def _submit(client: httpx.Client, prompt: str = "p", **fields: Any) -> dict[str, Any]:
    model = fields.pop("model", "echo")
    body = {"input": {"prompt": prompt, **fields.pop("input", {})}, "sync": False, **fields}
    answer = client.post(f"/v1/models/{model}/run", json=body)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def _running(client: httpx.Client, latency_ms: int = 20000) -> dict[str, Any]:
    job = _submit(client, "slow", input={"latency_ms": latency_ms})
    return wait_for_job(client, job["id"], statuses={"running"})


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- GET /v1/jobs/{id} ----------------------------------------------------------------------


def test_etag_and_if_none_match_on_a_finished_job(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "e"}}).json()
        first = client.get(f"/v1/jobs/{job['id']}")
        assert first.status_code == 200
        tag = first.headers["etag"]
        assert tag.startswith('"') and tag.endswith('"')
        assert "retry-after" not in first.headers
        assert client.get(f"/v1/jobs/{job['id']}").headers["etag"] == tag

        cached = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": tag})
        assert cached.status_code == 304
        assert cached.headers["etag"] == tag
        assert cached.content == b""
        assert cached.headers["x-request-id"].startswith("req_")

        listed = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": f'"nope", {tag}'})
        assert listed.status_code == 304
        stale = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": '"0.0"'})
        assert stale.status_code == 200
        assert (stale.json()["id"], stale.json()["status"]) == (job["id"], "succeeded")


def test_if_none_match_uses_weak_comparison(server: ServerProcess, account: dict[str, str]) -> None:
    """RFC 9110 §13.1.2: If-None-Match compares weakly, so a tag a proxy has weakened
    (W/"…", as compressing proxies do) still matches, and `*` matches any job."""
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "w"}}).json()
        tag = client.get(f"/v1/jobs/{job['id']}").headers["etag"]
        weak = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": f"W/{tag}"})
        assert weak.status_code == 304
        star = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": "*"})
        assert star.status_code == 304


def test_a_changed_job_gets_a_new_etag_and_retry_after_only_while_active(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        job = _submit(client, input={"latency_ms": 1500})
        active = client.get(f"/v1/jobs/{job['id']}")
        assert active.json()["status"] in {"queued", "running"}
        old_tag = active.headers["etag"]
        assert int(active.headers["retry-after"]) >= 1
        unchanged = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": old_tag})
        if unchanged.status_code == 304:
            assert int(unchanged.headers["retry-after"]) >= 1

        wait_for_job(client, job["id"])
        fresh = client.get(f"/v1/jobs/{job['id']}", headers={"If-None-Match": old_tag})
        assert fresh.status_code == 200
        assert fresh.json()["status"] == "succeeded"
        assert fresh.headers["etag"] != old_tag
        assert "retry-after" not in fresh.headers


@pytest.mark.parametrize("form", ["prefixed", "hex", "dashed", "upper-hex"])
def test_jobs_are_found_by_bare_uuid_too(
    server: ServerProcess, account: dict[str, str], form: str
) -> None:
    with server.client(account["api_key"]) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "u"}}).json()
        hex_id = job["id"].removeprefix("job_")
        ident = {
            "prefixed": job["id"],
            "hex": hex_id,
            "dashed": str(uuid.UUID(hex_id)),
            "upper-hex": hex_id.upper(),
        }[form]
        answer = client.get(f"/v1/jobs/{ident}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == job["id"]
        # The same ids reach the cancel routes: a finished job is a conflict, not 404.
        assert_error(client.post(f"/v1/jobs/{ident}/cancel"), 409, "conflict")
        assert_error(client.delete(f"/v1/jobs/{ident}"), 409, "conflict")


@pytest.mark.parametrize(
    "ident",
    [
        "job_xyz",
        "123",
        "job_" + "z" * 32,
        "job_" + "0" * 31,
        "acct_" + "0" * 32,
        "job_" + "0" * 32,
        # A well-formed UUID that names no job (fixed, so every test worker collects it).
        "4f5d2a6e-9c1b-4e7a-8f3d-2b6c9a1e0d47",
    ],
)
def test_malformed_or_unknown_job_ids_are_404(
    server: ServerProcess, account: dict[str, str], ident: str
) -> None:
    with server.client(account["api_key"]) as client:
        assert_error(client.get(f"/v1/jobs/{ident}"), 404, "not_found")
        assert_error(client.post(f"/v1/jobs/{ident}/cancel"), 404, "not_found")
        assert_error(client.delete(f"/v1/jobs/{ident}"), 404, "not_found")


# -- GET /v1/jobs ---------------------------------------------------------------------------


def test_list_filters_by_status_model_and_tag(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        ok = client.post(
            "/v1/models/echo/run",
            json={"input": {"prompt": "a"}, "tags": [{"key": "batch", "value": "one"}]},
        ).json()
        failed = client.post(
            "/v1/models/echo/run",
            json={
                "input": {"prompt": "b", "fail": True},
                "tags": [{"key": "batch", "value": "two"}],
            },
        ).json()
        image = client.post(
            "/v1/models/local-image/run",
            json={
                "input": {"prompt": "c", "width": 64, "height": 64},
                "tags": [{"key": "batch", "value": "one"}, {"key": "team", "value": "x:y"}],
            },
        ).json()
        assert (ok["status"], failed["status"], image["status"]) == (
            "succeeded",
            "failed",
            "succeeded",
        )

        def ids(query: str) -> list[str]:
            answer = client.get(f"/v1/jobs?{query}")
            assert answer.status_code == 200, answer.text
            return [job["id"] for job in answer.json()["jobs"]]

        assert ids("") == [image["id"], failed["id"], ok["id"]]
        assert ids("status=failed") == [failed["id"]]
        assert ids("status=succeeded") == [image["id"], ok["id"]]
        assert ids("status=running") == []
        assert ids("model=echo") == [failed["id"], ok["id"]]
        assert ids("model=local-image") == [image["id"]]
        assert ids("model=nope") == []
        assert ids("modality=image") == [image["id"], failed["id"], ok["id"]]
        assert ids("modality=video") == []
        assert ids("tag=batch:one") == [image["id"], ok["id"]]
        assert ids("tag=batch:two") == [failed["id"]]
        assert ids("tag=batch:one&tag=team:x:y") == [image["id"]]
        assert ids("tag=batch:three") == []
        assert ids("status=succeeded&model=echo&tag=batch:one") == [ok["id"]]
        just_after_ok = _iso(_parse(ok["created_at"]) + timedelta(milliseconds=1))
        assert ids(f"created_after={just_after_ok}") == [image["id"], failed["id"]]
        assert ids(f"created_before={image['created_at']}") == [failed["id"], ok["id"]]
        assert ids(f"created_after={just_after_ok}&created_before={image['created_at']}") == [
            failed["id"]
        ]


def test_created_after_a_jobs_own_timestamp_excludes_that_job(
    server: ServerProcess, account: dict[str, str]
) -> None:
    """`created_after=<a job's created_at>` means strictly after it, at the precision
    the API shows timestamps in: a client paging by time must not see the job again."""
    with server.client(account["api_key"]) as client:
        first = client.post("/v1/models/echo/run", json={"input": {"prompt": "1"}}).json()
        second = client.post("/v1/models/echo/run", json={"input": {"prompt": "2"}}).json()
        after = client.get("/v1/jobs", params={"created_after": first["created_at"]}).json()
        assert [job["id"] for job in after["jobs"]] == [second["id"]]


def test_cursor_pagination_over_45_jobs(server: ServerProcess, account: dict[str, str]) -> None:
    with server.client(account["api_key"]) as client:
        submitted = [_submit(client, f"job {n}")["id"] for n in range(45)]
        newest_first = list(reversed(submitted))
        seen: list[str] = []
        pages = []
        cursor: str | None = None
        while True:
            query = "limit=20" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(f"/v1/jobs?{query}").json()
            pages.append(page)
            seen += [job["id"] for job in page["jobs"]]
            if len(pages) == 1:
                # A job submitted while paging is newer than the cursor: never seen.
                late = _submit(client, "late")["id"]
            cursor = page["cursor"]
            if not page["has_more"]:
                break
            assert cursor
        assert [len(page["jobs"]) for page in pages] == [20, 20, 5]
        assert [page["has_more"] for page in pages] == [True, True, False]
        assert pages[-1]["cursor"] is None
        assert seen == newest_first
        assert late not in seen
        # Cursors are URL-safe as they are.
        assert all(URL_SAFE.match(page["cursor"]) for page in pages[:-1])
        assert len(client.get("/v1/jobs?limit=100").json()["jobs"]) == 46
        default = client.get("/v1/jobs").json()
        assert len(default["jobs"]) == 20
        assert default["has_more"] is True


# -- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["post", "delete"])
def test_cancel_a_running_job(server: ServerProcess, account: dict[str, str], how: str) -> None:
    with server.client(account["api_key"]) as client:
        job = _running(client)
        assert job["queue_position"] is None
        assert client.get("/v1/account").json()["reserved_micro"] == ECHO_PRICE_MICRO
        if how == "post":
            answer = client.post(f"/v1/jobs/{job['id']}/cancel")
        else:
            answer = client.delete(f"/v1/jobs/{job['id']}")
        assert answer.status_code == 200, answer.text
        cancelled = answer.json()
        assert cancelled["id"] == job["id"]
        assert cancelled["status"] == "cancelled"
        assert cancelled["completed_at"] is not None
        assert cancelled["cost"]["cost_micro"] == 0
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
        account_view = client.get("/v1/account").json()
        assert account_view["reserved_micro"] == 0
        assert account_view["balance_micro"] == START_BALANCE_MICRO
        # Cancelling again is a conflict, either way.
        error = assert_error(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, "conflict")
        assert error["details"] == {"status": "cancelled"}
        assert_error(client.delete(f"/v1/jobs/{job['id']}"), 409, "conflict")


def test_cancel_of_a_succeeded_or_failed_job_is_409(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        for model_input, status in (
            ({"prompt": "s"}, "succeeded"),
            ({"prompt": "f", "fail": True}, "failed"),
        ):
            job = client.post("/v1/models/echo/run", json={"input": model_input}).json()
            assert job["status"] == status
            error = assert_error(client.post(f"/v1/jobs/{job['id']}/cancel"), 409, "conflict")
            assert error["details"] == {"status": status}
            assert_error(client.delete(f"/v1/jobs/{job['id']}"), 409, "conflict")
            assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == status
        assert client.get("/v1/account").json()["balance_micro"] == (
            START_BALANCE_MICRO - ECHO_PRICE_MICRO
        )


# -- tenant isolation ---------------------------------------------------------------------


def test_another_accounts_job_is_404_everywhere(server: ServerProcess) -> None:
    alice, bob = server.create_account("alice"), server.create_account("bob")
    with server.client(alice["api_key"]) as a, server.client(bob["api_key"]) as b:
        running = _running(a)
        done = a.post("/v1/models/echo/run", json={"input": {"prompt": "done"}}).json()
        tag = a.get(f"/v1/jobs/{done['id']}").headers["etag"]
        for job in (running, done):
            hex_id = job["id"].removeprefix("job_")
            for ident in (job["id"], hex_id, str(uuid.UUID(hex_id))):
                assert_error(b.get(f"/v1/jobs/{ident}"), 404, "not_found")
                assert_error(b.post(f"/v1/jobs/{ident}/cancel"), 404, "not_found")
                assert_error(b.delete(f"/v1/jobs/{ident}"), 404, "not_found")
        cached = b.get(f"/v1/jobs/{done['id']}", headers={"If-None-Match": tag})
        assert_error(cached, 404, "not_found")
        # Bob's attempts changed nothing.
        assert a.get(f"/v1/jobs/{running['id']}").json()["status"] == "running"
        assert b.get("/v1/jobs").json() == {"jobs": [], "has_more": False, "cursor": None}
        bobs = b.post("/v1/models/echo/run", json={"input": {"prompt": "bob"}}).json()
        assert [job["id"] for job in b.get("/v1/jobs?limit=100").json()["jobs"]] == [bobs["id"]]
        alices = {job["id"] for job in a.get("/v1/jobs?limit=100").json()["jobs"]}
        assert alices == {running["id"], done["id"]}
        # Bob's ledger and account show nothing of Alice's.
        assert b.get("/v1/account").json()["id"] == bob["account_id"]
        bob_jobs = {e["job_id"] for e in b.get("/v1/account/ledger").json()["entries"]}
        assert bob_jobs == {None, bobs["id"]}
        assert a.post(f"/v1/jobs/{running['id']}/cancel").status_code == 200


# -- money ----------------------------------------------------------------------------------


def _account(client: httpx.Client) -> dict[str, Any]:
    answer = client.get("/v1/account")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    assert view["available_micro"] == view["balance_micro"] - view["reserved_micro"]
    assert view["credits"] == view["balance_micro"] / 10_000
    return view


def test_account_balances_before_during_and_after_jobs(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        before = _account(client)
        assert before == {
            "object": "account",
            "id": account["account_id"],
            "name": "e2e",
            "balance_micro": START_BALANCE_MICRO,
            "reserved_micro": 0,
            "available_micro": START_BALANCE_MICRO,
            "credits": 1000.0,
        }
        job = _submit(client, input={"latency_ms": 1500})
        during = _account(client)
        assert during["balance_micro"] == START_BALANCE_MICRO
        assert during["reserved_micro"] == ECHO_PRICE_MICRO
        wait_for_job(client, job["id"])
        after = _account(client)
        assert after["balance_micro"] == START_BALANCE_MICRO - ECHO_PRICE_MICRO
        assert after["reserved_micro"] == 0
        assert after["credits"] == 999.9

        image = _submit(
            client, model="local-image", input={"width": 64, "height": 64, "num_images": 2}
        )
        finished = wait_for_job(client, image["id"])
        assert finished["cost"]["cost_micro"] == 20_000
        failed = client.post("/v1/models/echo/run", json={"input": {"prompt": "f", "fail": True}})
        assert failed.json()["status"] == "failed"
        final = _account(client)
        assert final["balance_micro"] == START_BALANCE_MICRO - ECHO_PRICE_MICRO - 20_000
        assert final["reserved_micro"] == 0


def test_ledger_lists_reserve_release_and_charge_newest_first(
    server: ServerProcess, account: dict[str, str]
) -> None:
    with server.client(account["api_key"]) as client:
        ok = client.post("/v1/models/echo/run", json={"input": {"prompt": "ok"}}).json()
        bad = client.post(
            "/v1/models/echo/run", json={"input": {"prompt": "f", "fail": True}}
        ).json()
        entries = client.get("/v1/account/ledger").json()["entries"]
        assert [(entry["kind"], entry["job_id"]) for entry in entries] == [
            ("release", bad["id"]),
            ("reserve", bad["id"]),
            ("charge", ok["id"]),
            ("release", ok["id"]),
            ("reserve", ok["id"]),
            ("credit", None),
        ]
        amounts = [entry["amount_micro"] for entry in entries]
        assert amounts == [1000, 1000, 1000, 1000, 1000, START_BALANCE_MICRO]
        # Each entry shows the account as it was right after it, newest first.
        assert [(e["balance_after_micro"], e["reserved_after_micro"]) for e in entries] == [
            (9_999_000, 0),
            (9_999_000, 1000),
            (9_999_000, 0),
            (10_000_000, 0),
            (10_000_000, 1000),
            (10_000_000, 0),
        ]
        assert all(entry["id"].startswith("led_") for entry in entries)
        assert all(entry["created_at"].endswith("Z") for entry in entries)

        paged: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = "limit=4" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(f"/v1/account/ledger?{query}").json()
            paged += page["entries"]
            if not page["has_more"]:
                assert page["cursor"] is None
                break
            cursor = page["cursor"]
            assert cursor
        assert paged == entries
