"""`gengate submit | jobs | wait` as real subprocesses against a real server: exit codes,
`--json` printing exactly one line, progress on stderr, the API key and URL from options
or the environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gengate.client import Client
from tests.e2e.server import GENGATE, ServerProcess, free_port


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    """The session's default-config server: these tests only touch their own accounts."""
    return shared_server


def gengate(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`gengate ARGS` with no GENGATE_* variable but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}
    return subprocess.run(
        [*GENGATE, *args],
        env={**clean, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_json_line(result: subprocess.CompletedProcess[str]) -> Any:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.stdout, result.stderr)
    return json.loads(lines[0])


@pytest.fixture
def env(server: ServerProcess, account: dict[str, str]) -> dict[str, str]:
    return {"GENGATE_API_KEY": account["api_key"], "GENGATE_BASE_URL": server.url}


@pytest.fixture
def sdk(server: ServerProcess, account: dict[str, str]) -> Iterator[Client]:
    with Client(account["api_key"], server.url) as client:
        yield client


def test_submit_then_wait(env: dict[str, str], sdk: Client) -> None:
    submitted = gengate(
        "submit",
        "echo",
        "-i",
        "prompt=from the cli",
        "--input",
        "latency_ms=300",
        "--tag",
        "suite:cli",
        "--priority",
        "1",
        "--json",
        env=env,
    )
    assert submitted.returncode == 0, submitted.stderr
    record = one_json_line(submitted)
    assert record["status"] in ("queued", "running") and record["model"] == "echo"
    assert record["input"]["latency_ms"] == 300 and record["priority"] == 1
    assert record["tags"] == [{"key": "suite", "value": "cli"}]

    waited = gengate("wait", record["id"], env=env)
    assert waited.returncode == 0, waited.stderr
    (line,) = waited.stdout.splitlines()
    assert line.startswith(f"{record['id']}  succeeded  echo  cost 0.1 credits  http://")
    assert f"{record['id']} succeeded 100%" in waited.stderr.splitlines()

    again = gengate("wait", record["id"], "--json", env=env)
    assert again.returncode == 0 and one_json_line(again)["status"] == "succeeded"
    assert again.stderr == ""
    assert sdk.jobs.get(record["id"]).status == "succeeded"


def test_submit_wait_shows_progress_and_exits_by_the_jobs_status(env: dict[str, str]) -> None:
    done = gengate(
        "submit",
        "echo",
        "-i",
        "prompt=ok",
        "-i",
        "latency_ms=1000",
        "-i",
        "progress_steps=4",
        "--wait",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    job_id = line.split()[0]
    assert line.startswith(f"{job_id}  succeeded  echo")
    assert f"submitted {job_id}" in done.stderr
    # Not a terminal: one plain line per change on stderr, from the submit to the end.
    progress = [row for row in done.stderr.splitlines() if row.startswith(job_id)]
    assert progress[0] in (f"{job_id} queued 0%", f"{job_id} running 0%")
    assert progress[-1] == f"{job_id} succeeded 100%"

    failed = gengate(
        "submit", "echo", "-i", "prompt=x", "-i", "fail=true", "--wait", "--json", env=env
    )
    assert failed.returncode == 1, failed.stderr
    record = one_json_line(failed)
    assert record["status"] == "failed" and record["error"]["code"] == "provider_error"
    assert failed.stderr == ""


def test_jobs_ls_show_and_cancel(env: dict[str, str], sdk: Client) -> None:
    tagged = [sdk.run("echo", {"prompt": f"t{n}"}, tags={"batch": "ls"}) for n in range(3)]
    failed = sdk.run("echo", {"prompt": "bad", "fail": True})
    slow = sdk.run("echo", {"prompt": "slow", "latency_ms": 20000}, sync=False)

    listed = gengate("jobs", "ls", "--tag", "batch:ls", "--limit", "2", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [job["id"] for job in one_json_line(listed)["jobs"]] == [tagged[2].id, tagged[1].id]
    human = gengate("jobs", "ls", "--model", "echo", "--status", "succeeded", env=env)
    assert human.returncode == 0
    rows = [row.split() for row in human.stdout.splitlines()]
    assert [row[0] for row in rows] == [job.id for job in reversed(tagged)]
    assert all(row[1:3] == ["succeeded", "echo"] for row in rows)

    shown = gengate("jobs", "show", failed.id, "--json", env=env)
    assert one_json_line(shown) == sdk.jobs.get(failed.id).to_dict()

    cancelled = gengate("jobs", "cancel", slow.id, "--json", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert one_json_line(cancelled)["status"] == "cancelled"
    again = gengate("jobs", "cancel", slow.id, "--json", env=env)
    assert again.returncode == 3
    error = one_json_line(again)
    assert error["error"] == "conflict" and error["status_code"] == 409
    assert error["details"]["status"] == "cancelled" and error["request_id"].startswith("req_")
    assert "409 conflict" in again.stderr

    waited = gengate("wait", slow.id, env=env)
    assert waited.returncode == 1 and " cancelled " in waited.stdout


def test_wait_gives_up_at_its_timeout(env: dict[str, str], sdk: Client) -> None:
    slow = sdk.run("echo", {"prompt": "slow", "latency_ms": 20000}, sync=False)
    waited = gengate("wait", slow.id, "--timeout", "1", "--json", env=env)
    assert waited.returncode == 4, waited.stderr
    assert one_json_line(waited)["status"] in ("queued", "running")
    assert "still" in waited.stderr

    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}
    interrupted = subprocess.Popen(
        [*GENGATE, "wait", slow.id],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert interrupted.stderr is not None
        first = interrupted.stderr.readline()  # the first progress line: it is waiting now
        assert first.startswith(slow.id), first
        interrupted.send_signal(signal.SIGINT)
        stdout, stderr = interrupted.communicate(timeout=60)
    finally:
        if interrupted.poll() is None:
            interrupted.kill()
            interrupted.communicate()
    assert interrupted.returncode == 130, stderr
    assert stdout == "" and stderr.strip().endswith("interrupted")
    assert sdk.jobs.get(slow.id).status in ("queued", "running")  # the job goes on
    sdk.jobs.cancel(slow.id)


def test_options_and_usage_errors(server: ServerProcess, account: dict[str, str]) -> None:
    by_option = gengate(
        "submit",
        "echo",
        "-i",
        "prompt=opt",
        "--json",
        "--api-key",
        account["api_key"],
        "--base-url",
        server.url,
    )
    assert by_option.returncode == 0, by_option.stderr
    assert one_json_line(by_option)["input"]["prompt"] == "opt"

    no_key = gengate("jobs", "ls", "--base-url", server.url)
    assert no_key.returncode == 2 and "GENGATE_API_KEY" in no_key.stderr
    bad_pair = gengate("submit", "echo", "-i", "prompt", "--api-key", "k")
    assert bad_pair.returncode == 2 and "key=value" in bad_pair.stderr

    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = gengate("jobs", "ls", "--json", "--api-key", "k", "--base-url", nobody)
    assert unreachable.returncode == 3
    assert one_json_line(unreachable)["error"] == "connection_error"
    assert unreachable.stderr.startswith("error: Could not reach")


class NoStreamProxy:
    """A reverse proxy in front of the server that does not pass event streams on (it
    answers 404 for them), as some load balancers and old gateways do."""

    def __init__(self, target: str) -> None:
        upstream = httpx.Client(base_url=target, timeout=30)
        self.upstream = upstream
        self.refused: list[str] = []
        self.polls_after_refusal = 0
        refused = self.refused
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.path.split("?")[0].endswith("/events"):
                    refused.append(self.path)
                    self.send_error(404)
                    return
                if refused and self.command == "GET":
                    proxy.polls_after_refusal += 1
                length = int(self.headers.get("content-length", "0"))
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = upstream.request(
                    self.command, self.path, content=self.rfile.read(length), headers=headers
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.upstream.close()


def test_wait_polls_when_the_event_stream_is_unavailable(
    server: ServerProcess, account: dict[str, str], sdk: Client
) -> None:
    job = sdk.run("echo", {"prompt": "poll me", "latency_ms": 20000}, sync=False)
    proxy = NoStreamProxy(server.url)
    env = {"GENGATE_API_KEY": account["api_key"], "GENGATE_BASE_URL": proxy.url}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}
    waiting = subprocess.Popen(
        [*GENGATE, "wait", job.id],
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Once the stream was refused and a poll came through after it, end the job.
        deadline = time.monotonic() + 60
        while not (proxy.refused and proxy.polls_after_refusal):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the CLI never fell back to polling"
            time.sleep(0.05)
        sdk.jobs.cancel(job.id)
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
        proxy.close()
    assert waiting.returncode == 1, stderr
    assert "event stream unavailable" in stderr and "polling" in stderr
    assert stdout.startswith(f"{job.id}  cancelled  echo")
    progress = [row for row in stderr.splitlines() if row.startswith(job.id)]
    assert progress[0] in (f"{job.id} queued 0%", f"{job.id} running 0%")
    assert progress[-1] == f"{job.id} cancelled 0%"
