"""A real `gengate serve` process on 127.0.0.1, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from gengate.config import load_settings
from gengate.services import accounts as account_service
from gengate.store.database import Database
from gengate.store.migrate import upgrade_to_head
from gengate.store.types import utcnow

GENGATE = [sys.executable, "-m", "gengate"]
STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, values: dict[str, Any], models: dict[str, dict[str, Any]]) -> None:
    """A gengate.toml from flat settings and `[models.<id>]` tables."""
    lines = [f"{key} = {_toml(value)}" for key, value in values.items()]
    for model_id, table in models.items():
        lines.append(f'\n[models."{model_id}"]')
        for key, value in table.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# Short timers: leases lapse in seconds, sweeps run often, nothing waits long.
TEST_SETTINGS: dict[str, Any] = {
    "lease_ttl_s": 2.0,
    "reaper_interval_s": 0.2,
    "poll_interval_s": 0.2,
    "progress_interval_s": 0.05,
    "shutdown_grace_s": 1.0,
    "rate_limit": "off",
    "access_log": True,
}


@dataclass
class ServerProcess:
    """One server process and the data dir it owns; restartable."""

    data_dir: Path
    config_path: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra_args: str) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}-{time.time_ns()}.log"
        env = {**os.environ, **self.env}
        env.pop("GENGATE_CONFIG", None)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *GENGATE,
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--config",
                    str(self.config_path),
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {STARTUP_TIMEOUT_S} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def create_account(self, name: str = "e2e", credits: Decimal | int = 1000) -> dict[str, str]:
        """An account with an API key, written straight into the server's database."""

        async def create() -> account_service.CreatedAccount:
            settings = load_settings(self.config_path, data_dir=self.data_dir)
            db = Database(settings.resolved_database_url)
            try:
                await upgrade_to_head(db)
                return await account_service.create_account(db, name, Decimal(credits), utcnow())
            finally:
                await db.dispose()

        created = asyncio.run(create())
        return {
            "account_id": created.account_id,
            "key_id": created.key_id,
            "api_key": created.api_key,
            "webhook_secret": created.webhook_secret,
        }

    def create_key(self, account_id: str) -> dict[str, str]:
        """Another API key for an account, written straight into the server's database."""

        async def create() -> account_service.CreatedKey:
            settings = load_settings(self.config_path, data_dir=self.data_dir)
            db = Database(settings.resolved_database_url)
            try:
                return await account_service.create_key(db, account_id, utcnow())
            finally:
                await db.dispose()

        created = asyncio.run(create())
        return {"key_id": created.key_id, "api_key": created.api_key}

    def client(self, api_key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def cli(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`gengate ARGS --data-dir … --config …` against this server's database."""
        return run_cli(
            *args,
            "--data-dir",
            str(self.data_dir),
            "--config",
            str(self.config_path),
            cwd=self.data_dir.parent,
            timeout_s=timeout_s,
        )


def start_server(
    tmp_path: Path,
    *,
    settings: dict[str, Any] | None = None,
    models: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ServerProcess:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = tmp_path / "gengate.toml"
    write_config(config_path, {**TEST_SETTINGS, **(settings or {})}, models or {})
    server = ServerProcess(data_dir=data_dir, config_path=config_path, env=env or {})
    server.start(*args)
    return server


# -- helpers for HTTP and CLI tests ---------------------------------------------------------

ERROR_FIELDS = frozenset({"error", "message", "details", "request_id"})
TERMINAL_STATUSES = frozenset({"succeeded", "partial", "failed", "cancelled"})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an error in the one shape of SPEC §2, and its `X-Request-Id`
    header names the same request as its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == ERROR_FIELDS, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str), body
    assert body["message"], body
    assert isinstance(body["details"], dict), body
    assert body["request_id"].startswith("req_"), body
    assert response.headers["x-request-id"] == body["request_id"]
    return body


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    *,
    statuses: frozenset[str] | set[str] = TERMINAL_STATUSES,
    timeout_s: float = 20.0,
) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` until the job reaches one of `statuses`."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(f"/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        job: dict[str, Any] = answer.json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s")
        time.sleep(0.05)


def run_cli(
    *args: str, cwd: Path, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gengate ARGS` as a real subprocess, with stdout and stderr captured apart."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("GENGATE_CONFIG", None)
    return subprocess.run(
        [*GENGATE, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
