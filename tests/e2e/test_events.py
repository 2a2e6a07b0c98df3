"""The event streams of SPEC §2 over real HTTP against a real `gengate serve`:
`GET /v1/jobs/{id}/events` (event order, keep-alives, `Last-Event-ID`, the end of the
stream, tenant isolation) and `GET /v1/events` (every job of the account, resume), the
end of a stream on the server when its client leaves, and at shutdown.

The streams are read with httpx-sse, a parser of the SSE format that is not gengate's."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent

from tests.e2e.server import ServerProcess, assert_error, start_server, wait_for_job

pytestmark = [pytest.mark.e2e]

KEEPALIVE_S = 0.4
MODELS = {
    "echo": {"params": {"max_latency_ms": 60_000}},
    # One job at a time: a second job waits in the queue behind the first.
    "single": {"provider": "echo", "concurrency": 1, "params": {"max_latency_ms": 60_000}},
}
STATUS_ORDER = {"queued": 0, "running": 1, "progress": 1}
TERMINAL = {"succeeded", "partial", "failed", "cancelled"}
# Generous against what the streams take here (well under a second per change).
READ_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, e2e_database: Callable[[], dict[str, str]]
) -> Iterator[ServerProcess]:
    process = start_server(
        tmp_path_factory.mktemp("events"),
        settings={**e2e_database(), "events_keepalive_s": KEEPALIVE_S},
        models=MODELS,
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(server: ServerProcess, account: dict[str, str]) -> Iterator[httpx.Client]:
    with server.client(account["api_key"]) as http:
        http.timeout = httpx.Timeout(READ_TIMEOUT_S)
        yield http


def submit(client: httpx.Client, model: str = "echo", **model_input: Any) -> str:
    body = {"input": {"prompt": "events", **model_input}, "sync": False}
    answer = client.post(f"/v1/models/{model}/run", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def data_events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """The events that carry data. httpx-sse also yields an empty event at every blank
    line once an id was seen (after each keep-alive comment, for one): skipped."""
    return (event for event in EventSource(response).iter_sse() if event.data)


def events_in(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(event, id) of each event with data in the raw lines of a stream, for tests that
    also read its comments (which the parser drops)."""
    found, name, event_id, has_data = [], "", "", False
    for line in lines:
        field, _, value = line.partition(":")
        if not line:
            if has_data:
                found.append((name, event_id))
            name, has_data = "", False
        elif field == "event":
            name = value.strip()
        elif field == "id":
            event_id = value.strip()
        elif field == "data":
            has_data = True
    return found


def read_stream(
    client: httpx.Client, path: str, *, last_event_id: str | None = None
) -> tuple[list[ServerSentEvent], httpx.Headers]:
    """Every event of a stream that ends by itself, within STREAM_DEADLINE_S."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    started = time.monotonic()
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        events = list(data_events(response))
    assert time.monotonic() - started < STREAM_DEADLINE_S
    return events, response.headers


def record(event: ServerSentEvent) -> dict[str, Any]:
    assert "\n" not in event.data  # one line of JSON
    data: dict[str, Any] = json.loads(event.data)
    return data


def check_job_sequence(events: list[ServerSentEvent], job_id: str) -> None:
    """One job's events: its records, ids growing, statuses only moving forward, one
    terminal event and that one last, each named after its change."""
    records = [record(event) for event in events]
    assert all(r["id"] == job_id for r in records)
    versions = [int(event.id) for event in events]
    assert versions == sorted(set(versions)), versions
    ranks = [STATUS_ORDER.get(event.event, 2) for event in events]
    assert ranks == sorted(ranks), [event.event for event in events]
    assert [e.event for e in events if e.event in TERMINAL] == [events[-1].event]
    for event, data in zip(events, records, strict=True):
        expected = {data["status"], "progress"} if data["status"] == "running" else {data["status"]}
        assert event.event in expected


# -- one job --------------------------------------------------------------------------------


def test_a_job_stream_runs_from_queued_to_succeeded_and_ends(client: httpx.Client) -> None:
    blocker = submit(client, "single", latency_ms=1000)
    job_id = submit(client, "single", latency_ms=900, progress_steps=3)
    events, headers = read_stream(client, f"/v1/jobs/{job_id}/events")

    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-store"
    check_job_sequence(events, job_id)
    names = [event.event for event in events]
    assert names[0] == "queued", names
    assert record(events[0])["queue_position"] == 0  # the blocker runs; nothing waits ahead
    assert "running" in names
    progress = [record(e)["progress"] for e in events if e.event == "progress"]
    assert progress and progress == sorted(progress) and 0 < progress[0] < 100
    last = record(events[-1])
    assert events[-1].event == "succeeded"
    assert last["progress"] == 100 and last["result"]["url"].startswith("http://127.0.0.1:")
    assert client.get(f"/v1/jobs/{blocker}").json()["status"] == "succeeded"

    # A finished job's stream is its terminal event, then the end.
    (again,), _ = read_stream(client, f"/v1/jobs/{job_id}/events")
    assert again.event == "succeeded" and again.id == events[-1].id


def test_keep_alive_comments_while_nothing_changes(client: httpx.Client) -> None:
    job_id = submit(client, latency_ms=30_000)
    comments: list[str] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        lines = response.iter_lines()
        quiet_until = time.monotonic() + 6 * KEEPALIVE_S
        for line in lines:
            if line.startswith(":"):
                comments.append(line)
            if time.monotonic() > quiet_until:
                break
        assert comments and set(comments) == {": keep-alive"}
        # About one per interval: 6 intervals give 5 or 6 (a busy machine may delay one
        # or two), never a flood.
        assert 2 <= len(comments) <= 8, comments
        client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        rest = events_in(lines)
    assert [name for name, _ in rest] == ["cancelled"]


def test_last_event_id_resumes_without_repeating(client: httpx.Client) -> None:
    job_id = submit(client, latency_ms=600, progress_steps=2)
    events, _ = read_stream(client, f"/v1/jobs/{job_id}/events")
    check_job_sequence(events, job_id)
    assert len(events) >= 2

    # The client had an earlier state: it gets the current one, once.
    resumed, _ = read_stream(client, f"/v1/jobs/{job_id}/events", last_event_id=events[0].id)
    assert [(e.event, e.id) for e in resumed] == [("succeeded", events[-1].id)]
    # The client had the terminal event: nothing more, and the stream ends.
    nothing, _ = read_stream(client, f"/v1/jobs/{job_id}/events", last_event_id=events[-1].id)
    assert nothing == []
    # An id this stream never gave out (another stream's, garbage) starts afresh.
    for foreign in ("t1767225600000", "abc", "99999"):
        afresh, _ = read_stream(client, f"/v1/jobs/{job_id}/events", last_event_id=foreign)
        assert [(e.event, e.id) for e in afresh] == [("succeeded", events[-1].id)]


def test_a_resumed_live_stream_waits_for_the_next_change(client: httpx.Client) -> None:
    job_id = submit(client, latency_ms=30_000)
    wait_for_job(client, job_id, statuses={"running"})
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        first = next(data_events(response))
    assert first.event == "running"

    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": first.id}
    ) as response:
        lines = response.iter_lines()
        quiet_until = time.monotonic() + 3 * KEEPALIVE_S
        seen = []
        for line in lines:
            seen.append(line)
            if time.monotonic() > quiet_until:
                break
        # Only keep-alives: the job has not changed since the event the client has.
        assert not [line for line in seen if line and not line.startswith(":")], seen
        client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        rest = events_in(lines)
    assert [name for name, _ in rest] == ["cancelled"]
    assert int(rest[0][1]) > int(first.id)


def test_streams_answer_like_the_other_job_endpoints(
    server: ServerProcess, client: httpx.Client
) -> None:
    job_id = submit(client)
    other = server.create_account("other")
    with server.client(other["api_key"]) as stranger:
        assert_error(stranger.get(f"/v1/jobs/{job_id}/events"), 404, "not_found")
        assert_error(stranger.get("/v1/jobs/job_nonsense/events"), 404, "not_found")
    with server.client() as anonymous:
        assert_error(anonymous.get(f"/v1/jobs/{job_id}/events"), 401, "unauthorized")
        assert_error(anonymous.get("/v1/events"), 401, "unauthorized")
    # The bare UUID names the job too.
    events, _ = read_stream(client, f"/v1/jobs/{job_id.removeprefix('job_')}/events")
    assert record(events[-1])["id"] == job_id


def test_the_openapi_document_describes_the_streams(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/{id}/events", "/v1/events"):
        answer = paths[path]["get"]["responses"]["200"]
        assert list(answer["content"]) == ["text/event-stream"]
        event = answer["content"]["text/event-stream"]["itemSchema"]
        assert event["properties"]["data"]["contentSchema"] == {
            "$ref": "#/components/schemas/JobRecord"
        }
        assert {p["name"] for p in paths[path]["get"]["parameters"]} >= {"Last-Event-ID"}


# -- the account ----------------------------------------------------------------------------


def follow_account(
    client: httpx.Client,
    until_done: list[str],
    *,
    last_event_id: str | None = None,
    once_open: Callable[[], None] = lambda: None,
) -> tuple[str, list[ServerSentEvent]]:
    """Open the account stream, call `once_open` when its checkpoint (an id without
    data) arrives, and read events until the checkpoint came and every job of
    `until_done` (which `once_open` may fill) had a terminal event. The checkpoint's
    id, and the events."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    checkpoint = ""
    events: list[ServerSentEvent] = []
    deadline = time.monotonic() + STREAM_DEADLINE_S
    with client.stream("GET", "/v1/events", headers=headers) as response:
        assert response.status_code == 200
        for event in EventSource(response).iter_sse():
            assert time.monotonic() < deadline, [e.event for e in events]
            if not event.data:
                # httpx-sse repeats the last id at every blank line (keep-alives too).
                if not checkpoint:
                    checkpoint = event.id
                    once_open()
            else:
                # A resumed stream sends what the client missed before its checkpoint.
                assert checkpoint or last_event_id is not None, "events before the checkpoint"
                events.append(event)
            done = {record(e)["id"] for e in events if e.event in TERMINAL}
            if checkpoint and set(until_done) <= done:
                break
    return checkpoint, events


def test_the_account_stream_sees_every_job_of_the_account(
    server: ServerProcess, client: httpx.Client
) -> None:
    other = server.create_account("neighbour")
    job_ids: list[str] = []
    stranger_ids: list[str] = []

    def submit_jobs() -> None:
        with server.client(other["api_key"]) as stranger:
            stranger_ids.append(submit(stranger, latency_ms=100))
        job_ids.append(submit(client, latency_ms=300, progress_steps=2))
        job_ids.append(submit(client, latency_ms=500))

    checkpoint, events = follow_account(client, job_ids, once_open=submit_jobs)

    assert checkpoint.startswith("t")
    by_job: dict[str, list[ServerSentEvent]] = {}
    for event in events:
        by_job.setdefault(record(event)["id"], []).append(event)
    assert set(by_job) == set(job_ids), "the account's own jobs, both of them, no other"
    assert stranger_ids[0] not in by_job
    for job_id, job_events in by_job.items():
        names = [event.event for event in job_events]
        # The stream was open before the submit, so it saw the job from its start (a
        # claim right after the submit may merge queued into running: one read, the
        # latest record).
        assert names[0] in ("queued", "running"), names
        ranks = [STATUS_ORDER.get(name, 2) for name in names]
        assert ranks == sorted(ranks), names
        assert names[-1] == "succeeded", (job_id, names)
    assert "progress" in [event.event for event in by_job[job_ids[0]]]
    stamps = [int(event.id.removeprefix("t")) for event in events]
    assert stamps == sorted(stamps) and stamps[0] >= int(checkpoint.removeprefix("t"))


def test_the_account_stream_resumes_from_its_last_event_id(client: httpx.Client) -> None:
    first: list[str] = []
    _, events = follow_account(client, first, once_open=lambda: first.append(submit(client)))
    last_id = events[-1].id
    # While the client is away, another job runs from start to end.
    missed = submit(client, latency_ms=200)
    wait_for_job(client, missed)

    resumed: list[ServerSentEvent] = []
    checkpoint, resumed = follow_account(client, [missed], last_event_id=last_id)
    # What changed since the last event id comes first (the latest record of each job;
    # a few seconds before it too, so the first job may come again), then the checkpoint.
    assert {record(e)["id"] for e in resumed} <= {missed, first[0]}
    assert [e.event for e in resumed if record(e)["id"] == missed] == ["succeeded"]
    assert int(checkpoint.removeprefix("t")) >= int(resumed[-1].id.removeprefix("t"))


def test_a_fresh_account_stream_starts_from_now(client: httpx.Client) -> None:
    done = submit(client)
    wait_for_job(client, done)
    later: list[str] = []
    _, events = follow_account(client, later, once_open=lambda: later.append(submit(client)))
    assert {record(e)["id"] for e in events} == {later[0]}


# -- the server's side of a stream ----------------------------------------------------------


def test_a_client_that_leaves_ends_its_stream_on_the_server(
    server: ServerProcess, client: httpx.Client
) -> None:
    """The server cancels the stream when its client disconnects: the request finishes
    (and is logged) although the stream would never end by itself."""
    marker = f"/v1/jobs/{submit(client, latency_ms=30_000)}/events"
    with client.stream("GET", marker) as response:
        assert next(data_events(response)).event in ("queued", "running")
    deadline = time.monotonic() + READ_TIMEOUT_S
    while marker not in server.logs():
        assert time.monotonic() < deadline, "the stream still runs on the server"
        time.sleep(0.05)
    # The job itself was not touched by the client leaving.
    assert client.get(marker.removesuffix("/events")).json()["status"] in ("queued", "running")


def test_shutdown_ends_open_streams_at_once(tmp_path: Path) -> None:
    """A server stopping with a stream open stops at once, not after its graceful
    shutdown timeout (here 25 s): the stream ends, and its client, which sees the
    connection close, can resume elsewhere."""
    server = start_server(tmp_path, settings={"shutdown_grace_s": 20}, models=MODELS)
    try:
        account = server.create_account()
        outcome: list[str] = []
        opened = threading.Event()

        def follow() -> None:
            with server.client(account["api_key"]) as http:
                http.timeout = httpx.Timeout(READ_TIMEOUT_S)
                with http.stream("GET", "/v1/events") as response:
                    opened.set()
                    try:
                        for _ in response.iter_lines():
                            pass
                        outcome.append("ended")
                    except httpx.RemoteProtocolError:
                        outcome.append("closed")  # the connection closed mid-stream

        reader = threading.Thread(target=follow)
        reader.start()
        assert opened.wait(READ_TIMEOUT_S)
        started = time.monotonic()
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        stopped_in = time.monotonic() - started
        reader.join(READ_TIMEOUT_S)
        assert outcome in (["ended"], ["closed"])
        assert stopped_in < 10, stopped_in
        assert "graceful shutdown exceeded" not in server.logs()
    finally:
        server.stop()
