"""Shared fixtures: settings, databases (SQLite and PostgreSQL), gateways, accounts."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gengate.config import Settings, load_settings
from gengate.services import accounts as account_service
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.store.database import Database
from gengate.store.migrate import upgrade_to_head
from gengate.store.types import utcnow

POSTGRES_ADMIN_URL = os.environ.get(
    "GENGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _postgres_url(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str | None]:
    """A migrated PostgreSQL database that per-test databases are copied from."""
    name = f"gg_template_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and not reachable: {exc}")
        yield None
        return

    async def migrate() -> None:
        db = Database(_postgres_url(name))
        try:
            await upgrade_to_head(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    yield name
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_template: str | None
) -> Iterator[str]:
    """Each test gets an empty, migrated database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gengate.db'}"
        return
    if postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    name = f"gg_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}"))
    yield _postgres_url(name)
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with short timers so lease, reaper and retry behaviour shows in seconds."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "lease_ttl_s": 1.5,
        "reaper_interval_s": 0.1,
        "poll_interval_s": 0.2,
        "progress_interval_s": 0.05,
        "shutdown_grace_s": 1.0,
        "rate_limit": "off",
        "access_log": False,
        "cpu_threads": 2,
    }
    values.update(overrides)
    return load_settings(None, **values)


@dataclass
class Caller:
    principal: Principal
    api_key: str
    account_id: str


async def new_caller(gw: Gateway, credits: Decimal | int = 1000, name: str = "test") -> Caller:
    created = await account_service.create_account(gw.db, name, Decimal(credits), utcnow())
    principal = await account_service.authenticate(gw.db, created.api_key)
    return Caller(principal, created.api_key, created.account_id)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return fast_settings(tmp_path / "data", database_url=database_url)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = await Gateway.open(settings)
    try:
        yield gw
    finally:
        await gw.close()


@pytest.fixture
async def caller(gateway: Gateway) -> Caller:
    return await new_caller(gateway)
