"""End-to-end fixtures: a real server process per test module or per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import _admin, _postgres_url
from tests.e2e.server import ServerProcess, start_server


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database(
    request: pytest.FixtureRequest, postgres_template: str | None
) -> Iterator[Callable[[], dict[str, str]]]:
    """Makes the database settings of one default server: its data dir's SQLite file, or
    a fresh PostgreSQL database of its own (servers must not share a database: each
    one's workers would run the others' jobs and keep the files in their own data dir).
    The end-to-end tests run against both."""
    created: list[str] = []

    def new_database() -> dict[str, str]:
        if request.param == "sqlite":
            return {}
        name = f"gg_e2e_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}"))
        created.append(name)
        return {"database_url": _postgres_url(name)}

    if request.param == "postgresql" and postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    yield new_database
    for name in created:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, e2e_database: Callable[[], dict[str, str]]
) -> Iterator[ServerProcess]:
    """A shared server for tests that do not change its configuration."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
        settings=e2e_database(),
        models={"echo": {"sync_window_s": 5, "params": {"max_latency_ms": 20000}}},
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def account(server: ServerProcess) -> dict[str, str]:
    return server.create_account()


@pytest.fixture
def fresh_server_path(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, e2e_database: Callable[[], dict[str, str]]
) -> Iterator[ServerProcess]:
    """One default-config server for the whole session, for modules whose tests only
    read and write their own accounts' data (each test makes a fresh account), so
    they need not pay for a server start each. A module opts in by overriding
    `server` with it; nothing may restart or reconfigure it."""
    process = start_server(
        tmp_path_factory.mktemp("shared-server"),
        settings=e2e_database(),
        models={"echo": {"sync_window_s": 5, "params": {"max_latency_ms": 20000}}},
    )
    try:
        yield process
    finally:
        process.stop()
