"""End-to-end fixtures: a real server process per test module or per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A shared server for tests that do not change its configuration."""
    process = start_server(
        tmp_path_factory.mktemp("server"),
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
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default-config server for the whole session, for modules whose tests only
    read and write their own accounts' data (each test makes a fresh account), so
    they need not pay for a server start each. A module opts in by overriding
    `server` with it; nothing may restart or reconfigure it."""
    process = start_server(
        tmp_path_factory.mktemp("shared-server"),
        models={"echo": {"sync_window_s": 5, "params": {"max_latency_ms": 20000}}},
    )
    try:
        yield process
    finally:
        process.stop()
