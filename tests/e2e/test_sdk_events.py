"""`job.events()` and `gengate wait` on a real server's event stream
(`GET /v1/jobs/{id}/events`): the events of a job in order up to its terminal one, the
end of the stream, and a resume with `Last-Event-ID` after the connection is cut."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from gengate.client import AsyncClient, Client, JobEvent
from gengate.client._jobs import Job
from tests.e2e.server import GENGATE, ServerProcess


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


@pytest.fixture
def client(server: ServerProcess, account: dict[str, str]) -> Iterator[Client]:
    with Client(account["api_key"], server.url) as sdk:
        yield sdk


def _check_sequence(events: list[JobEvent[Job]], job_id: str) -> None:
    assert events, "no event"
    assert all(event.job.id == job_id for event in events)
    assert [e for e in events if e.job.is_terminal] == events[-1:]
    assert events[-1].type == "succeeded" and events[-1].job.progress == 100
    assert all(event.type in ("queued", "running", "progress", "succeeded") for event in events)
    progress = [event.job.progress for event in events]
    assert progress == sorted(progress)
    assert all(event.id for event in events)


def test_events_run_from_the_current_state_to_the_terminal_event(client: Client) -> None:
    job = client.run(
        "echo", {"prompt": "stream", "latency_ms": 1500, "progress_steps": 3}, sync=False
    )
    started = time.monotonic()
    events = list(job.events())
    assert time.monotonic() - started < 15
    _check_sequence(events, job.id)
    assert any(event.job.status == "running" for event in events)
    assert any(0 < event.job.progress < 100 for event in events)
    assert events[-1].job.url is not None

    # A finished job's stream has its terminal event and ends.
    (only,) = list(client.jobs.get(job.id).events())
    assert only.type == "succeeded" and only.job.status == "succeeded"


async def test_async_events(server: ServerProcess, account: dict[str, str]) -> None:
    async with AsyncClient(account["api_key"], server.url) as client:
        job = await client.run(
            "echo", {"prompt": "async stream", "latency_ms": 1000, "progress_steps": 2}, sync=False
        )
        events = [event async for event in job.events()]
    assert events[-1].type == "succeeded" and events[-1].job.id == job.id
    assert [e for e in events if e.job.is_terminal] == events[-1:]


class StreamCutter:
    """A TCP proxy, one request per connection, that passes the answer to the first
    event-stream request through only up to the end of its first event with data, then
    cuts that connection; every other answer passes whole.

    Each request goes upstream with `Connection: close`, so that the client opens a new
    connection for its next request: a client reusing a kept-alive connection (httpx
    does, after `jobs.get`) would otherwise send its stream request where this proxy no
    longer reads, and the cut would never happen."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._cut_done = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _take_cut(self, request: bytes) -> bool:
        """Whether this request's answer is the one to cut (the first stream's)."""
        with self._lock:
            if self._cut_done or b"/events" not in request.split(b"\r\n")[0]:
                return False
            self._cut_done = True
            return True

    def _serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            self.requests.append(request)
            cut = self._take_cut(request)
            head, _, rest = request.partition(b"\r\n")
            upstream.sendall(head + b"\r\nConnection: close\r\n" + rest)
            seen, sent = b"", 0
            while chunk := upstream.recv(65536):
                seen += chunk
                event_end = -1
                if cut and (data_at := seen.find(b"data:")) >= 0:
                    event_end = seen.find(b"\n\n", data_at)
                limit = event_end + 2 if event_end >= 0 else len(seen)
                conn.sendall(seen[sent:limit])
                sent = limit
                if event_end >= 0:
                    return  # cut right after the first event with data
        except OSError:
            pass
        finally:
            conn.close()
            upstream.close()


def test_a_cut_stream_resumes_after_the_last_event(client: Client, server: ServerProcess) -> None:
    job = client.run("echo", {"prompt": "cut", "latency_ms": 1500, "progress_steps": 3}, sync=False)
    cutter = StreamCutter(server.port)
    try:
        with Client(client.api_key, f"http://127.0.0.1:{cutter.port}") as via_proxy:
            events = list(via_proxy.jobs.get(job.id).events())
    finally:
        cutter.close()
    _check_sequence(events, job.id)
    stream_requests = [r for r in cutter.requests if b"/events" in r.split(b"\r\n")[0]]
    assert len(stream_requests) >= 2
    assert b"last-event-id" not in stream_requests[0].lower()
    resumed = stream_requests[1].decode("latin-1").lower()
    assert f"last-event-id: {events[0].id}".lower() in resumed
    assert len({event.id for event in events}) == len(events)  # nothing repeated


def test_cli_wait_follows_the_event_stream(
    server: ServerProcess, account: dict[str, str], client: Client
) -> None:
    job = client.run("echo", {"prompt": "cli stream", "latency_ms": 20000}, sync=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}
    env = {**clean, "GENGATE_API_KEY": account["api_key"], "GENGATE_BASE_URL": server.url}
    waiting = subprocess.Popen(
        [*GENGATE, "wait", job.id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert waiting.stderr is not None
        first = waiting.stderr.readline()
        assert first.startswith(job.id), first
        client.jobs.cancel(job.id)
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 1, stderr
    assert "polling" not in stderr
    assert stdout.startswith(f"{job.id}  cancelled")
    assert stderr.splitlines()[-2] == f"{job.id} cancelled 0%"
