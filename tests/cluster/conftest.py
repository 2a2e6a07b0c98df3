"""Cluster fixtures: an empty, migrated PostgreSQL database per test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import _admin, _postgres_url


@pytest.fixture
def pg_url(postgres_template: str | None) -> Iterator[str]:
    if postgres_template is None:
        pytest.skip("PostgreSQL is not reachable")
    name = f"gg_fleet_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name} TEMPLATE {postgres_template}"))
    yield _postgres_url(name)
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
