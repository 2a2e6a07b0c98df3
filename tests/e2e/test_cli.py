"""The `gengate` command line as operators and scripts use it: real subprocesses
with `--data-dir`/`--config`, `--json` printing exactly one line, and a real server
seeing what the commands did."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import (
    GENGATE,
    TEST_SETTINGS,
    ServerProcess,
    assert_error,
    run_cli,
    write_config,
)

FIRST_KEY = re.compile(r"export GENGATE_API_KEY=(gg_live_[A-Za-z0-9_-]+)")
UNKNOWN_ACCOUNT = "acct_" + "0" * 32


@dataclass
class Served:
    """A `gengate serve` started on an empty data dir, with its stdout kept apart."""

    server: ServerProcess
    starts: int = 0

    @property
    def stdout_path(self) -> Path:
        return self.server.data_dir.parent / f"serve-{self.starts}.stdout"

    def stdout(self) -> str:
        """What the latest start printed on stdout."""
        return self.stdout_path.read_text(errors="replace")

    def start(self) -> None:
        self.starts += 1
        self.server.log_path = self.stdout_path.with_suffix(".stderr")
        env = {**os.environ}
        # Configured by the test's files only; the signing secret is generated and kept.
        for name in ("GENGATE_CONFIG", "GENGATE_SECRET_KEY", "GENGATE_PUBLIC_URL"):
            env.pop(name, None)
        command = [
            *GENGATE,
            "serve",
            "--port",
            str(self.server.port),
            "--data-dir",
            str(self.server.data_dir),
            "--config",
            str(self.server.config_path),
        ]
        with self.stdout_path.open("wb") as out, self.server.log_path.open("wb") as err:
            self.server.process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        self.server.wait_ready()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("cli")
    data_dir = home / "data"  # does not exist yet: serve makes it
    config_path = home / "gengate.toml"
    write_config(config_path, TEST_SETTINGS, {})
    process = Served(ServerProcess(data_dir=data_dir, config_path=config_path))
    process.start()
    try:
        yield process
    finally:
        process.server.stop()


def _json_line(result: subprocess.CompletedProcess[str]) -> Any:
    """The one line of JSON a `--json` command prints on stdout."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def _account_view(server: ServerProcess, api_key: str) -> dict[str, Any]:
    with server.client(api_key) as client:
        answer = client.get("/v1/account")
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view


def test_migrate_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    migrated = run_cli("migrate", "--data-dir", str(data_dir), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == ""
    assert "up to date" in migrated.stderr
    assert (data_dir / "gengate.db").is_file()


def test_serve_on_a_fresh_data_dir_prints_the_url_and_a_working_first_key(
    served: Served,
) -> None:
    stdout = served.stdout()
    assert served.server.url in stdout
    found = FIRST_KEY.search(stdout)
    assert found, stdout
    assert f"GENGATE_BASE_URL={served.server.url}" in stdout
    view = _account_view(served.server, found.group(1))
    assert view["id"].startswith("acct_")
    assert view["name"] == "default"
    assert view["balance_micro"] > 0
    with served.server.client(found.group(1)) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "first"}})
    assert job.status_code == 200, job.text


def test_accounts_create_prints_one_json_line_with_usable_credentials(served: Served) -> None:
    created = _json_line(
        served.server.cli("accounts", "create", "acme", "--credits", "50", "--json")
    )
    assert set(created) == {"account_id", "key_id", "api_key", "webhook_secret"}
    assert re.fullmatch(r"acct_[0-9a-f]{32}", created["account_id"])
    assert re.fullmatch(r"key_[0-9a-f]{32}", created["key_id"])
    assert re.fullmatch(r"gg_live_[A-Za-z0-9_-]{43,}", created["api_key"])
    assert created["webhook_secret"].startswith("whsec_")
    secret = base64.b64decode(created["webhook_secret"].removeprefix("whsec_"), validate=True)
    assert len(secret) == 32

    view = _account_view(served.server, created["api_key"])
    assert view["id"] == created["account_id"]
    assert view["name"] == "acme"
    assert view["balance_micro"] == 500_000
    assert view["credits"] == 50.0

    listed = _json_line(served.server.cli("accounts", "list", "--json"))
    mine = [row for row in listed["accounts"] if row["id"] == created["account_id"]]
    assert len(mine) == 1
    assert mine[0]["name"] == "acme"
    assert mine[0]["balance_micro"] == 500_000
    assert mine[0]["credits"] == 50.0
    assert "default" in {row["name"] for row in listed["accounts"]}
    assert created["api_key"] not in json.dumps(listed)


def test_accounts_credit_tops_up_a_running_servers_account(served: Served) -> None:
    created = served.server.create_account("topup", credits=50)
    credited = served.server.cli("accounts", "credit", created["account_id"], "--credits", "25")
    assert credited.returncode == 0, credited.stderr
    assert "75" in credited.stdout
    view = _account_view(served.server, created["api_key"])
    assert view["balance_micro"] == 750_000
    assert view["credits"] == 75.0
    with served.server.client(created["api_key"]) as client:
        entries = client.get("/v1/account/ledger").json()["entries"]
    assert [(e["kind"], e["amount_micro"]) for e in entries] == [
        ("credit", 250_000),
        ("credit", 500_000),
    ]


REFUSED = [
    ("accounts", "credit", UNKNOWN_ACCOUNT, "--credits", "5"),
    ("keys", "create", UNKNOWN_ACCOUNT, "--json"),
    ("keys", "revoke", "key_" + "0" * 32),
    ("accounts", "create", "negative", "--credits", "-5", "--json"),
]


def test_refused_commands_exit_non_zero_with_a_message_on_stderr(served: Served) -> None:
    with ThreadPoolExecutor(len(REFUSED)) as pool:
        results = list(pool.map(lambda args: served.server.cli(*args), REFUSED))
    for args, result in zip(REFUSED, results, strict=True):
        assert result.returncode != 0, args
        assert result.stdout == "", args
        assert result.stderr.strip(), args
    for result in results[:3]:
        assert "error" in result.stderr.lower(), result.stderr
        assert "0" * 32 in result.stderr, result.stderr
    assert "negative" in results[3].stderr.lower()


def test_keys_create_list_and_revoke(served: Served) -> None:
    created = served.server.create_account("keys", credits=1)
    account_id = created["account_id"]
    extra = _json_line(served.server.cli("keys", "create", account_id, "--json"))
    assert set(extra) == {"key_id", "api_key"}
    assert re.fullmatch(r"key_[0-9a-f]{32}", extra["key_id"])
    assert extra["api_key"].startswith("gg_live_")
    assert extra["api_key"] != created["api_key"]
    assert _account_view(served.server, extra["api_key"])["id"] == account_id

    revoked = served.server.cli("keys", "revoke", extra["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    with httpx.Client(
        base_url=served.server.url, headers={"X-API-Key": extra["api_key"]}, timeout=30
    ) as client:
        assert_error(client.get("/v1/account"), 401, "unauthorized")
    assert _account_view(served.server, created["api_key"])["id"] == account_id
    keys = _json_line(served.server.cli("keys", "list", account_id, "--json"))["keys"]
    assert {key["key_id"]: key["revoked"] for key in keys} == {
        created["key_id"]: False,
        extra["key_id"]: True,
    }
    assert all(key["prefix"].startswith("gg_live_") for key in keys)
    listed_text = json.dumps(keys)
    assert created["api_key"] not in listed_text
    assert extra["api_key"] not in listed_text


def test_serve_again_keeps_the_first_account_and_old_file_links(served: Served) -> None:
    """A second start on the same data dir creates no new first account, and links
    signed before the restart still download: the generated signing secret is kept
    in the database. (Last in this module: it restarts the server.)"""
    first_key = FIRST_KEY.search(served.stdout())
    assert first_key
    with served.server.client(first_key.group(1)) as client:
        job = client.post("/v1/models/echo/run", json={"input": {"prompt": "keep me"}}).json()
    link = job["result"]["url"]
    with httpx.Client(timeout=30) as anonymous:
        before = anonymous.get(link)
    assert before.status_code == 200
    served.server.stop()
    served.start()
    assert served.server.url in served.stdout()
    assert "GENGATE_API_KEY" not in served.stdout()
    assert _account_view(served.server, first_key.group(1))["name"] == "default"
    with httpx.Client(timeout=30) as anonymous:
        after = anonymous.get(link)
    assert after.status_code == 200
    assert after.content == before.content
