"""End-to-end fixtures: a real server process per test module or per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _admin, _postgres_url
from tests.e2e.server import ServerProcess, start_server


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def e2e_database(
    request: pytest.FixtureRequest, postgres_template: str | None
) -> Iterator[dict[str, str]]:
    """The database of the default servers: their data dir's SQLite file, or a fresh
    PostgreSQL database, so the end-to-end tests run against both."""
    if request.param == "sqlite":
        yield {}
        return
    if postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    name = f"gg_e2e_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}"))
    yield {"database_url": _postgres_url(name)}
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, e2e_database: dict[str, str]
) -> Iterator[ServerProcess]:
    """A shared server for tests that do not change its configuration."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
        settings=e2e_database,
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
    tmp_path_factory: pytest.TempPathFactory, e2e_database: dict[str, str]
) -> Iterator[ServerProcess]:
    """One default-config server for the whole session, for modules whose tests only
    read and write their own accounts' data (each test makes a fresh account), so
    they need not pay for a server start each. A module opts in by overriding
    `server` with it; nothing may restart or reconfigure it."""
    process = start_server(
        tmp_path_factory.mktemp("shared-server"),
        settings=e2e_database,
        models={"echo": {"sync_window_s": 5, "params": {"max_latency_ms": 20000}}},
    )
    try:
        yield process
    finally:
        process.stop()
