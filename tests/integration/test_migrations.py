"""Migrations: applied to an empty database they yield exactly the declared schema."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from gengate.store.database import Database
from gengate.store.migrate import head_revision, schema_is_current, upgrade_to_head
from gengate.store.schema import metadata
from tests.conftest import IN_CI, POSTGRES_ADMIN_URL


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (the shared fixture's are already migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"gg_empty_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI and not reachable: {exc}")
        pytest.skip("PostgreSQL is not reachable")
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    yield f"{base}/{name}"
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def schema_differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


def table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def partial_index_predicates(conn: Connection) -> dict[str, tuple[set[str], set[str]]]:
    """Index name → (columns, quoted literals) its WHERE clause mentions, as reflected."""
    dialect_key = f"{conn.dialect.name}_where"
    found: dict[str, tuple[set[str], set[str]]] = {}
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        for index in inspector.get_indexes(table.name):
            where = index.get("dialect_options", {}).get(dialect_key)
            if where is not None:
                found[str(index["name"])] = predicate_terms(str(where), set(table.c.keys()))
    return found


def declared_partial_indexes(dialect: str) -> dict[str, tuple[set[str], set[str]]]:
    declared: dict[str, tuple[set[str], set[str]]] = {}
    for table in metadata.sorted_tables:
        for index in table.indexes:
            where = index.dialect_options[dialect]["where"]
            if where is not None:
                declared[str(index.name)] = predicate_terms(str(where), set(table.c.keys()))
    return declared


def predicate_terms(where: str, columns: set[str]) -> tuple[set[str], set[str]]:
    literals = set(re.findall(r"'([^']*)'", where))
    bare = re.sub(r"'[^']*'", " ", where)
    words = set(re.findall(r"[a-z_]+", bare.lower()))
    return words & columns, literals


async def test_migrations_yield_exactly_the_declared_schema(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(table_names) == set()
        assert not await schema_is_current(db)
        await upgrade_to_head(db)
        async with db.read() as conn:
            assert await conn.run_sync(schema_differences) == []
            assert await conn.run_sync(table_names) == {*metadata.tables, "alembic_version"}
            reflected = await conn.run_sync(partial_index_predicates)
        # Autogenerate does not compare partial-index predicates; the queue relies on them.
        assert reflected == declared_partial_indexes(db.dialect)
        assert "ix_jobs_queue" in reflected
        assert await schema_is_current(db)
        # Upgrading again (every start does) changes nothing.
        await upgrade_to_head(db)
        async with db.read() as conn:
            assert await conn.run_sync(schema_differences) == []
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [row.version_num for row in versions] == [head_revision()]
        assert await schema_is_current(db)
    finally:
        await db.dispose()


async def test_the_comparison_notices_a_schema_that_drifted(empty_database_url: str) -> None:
    """The check above is only worth something if it sees a difference."""
    db = Database(empty_database_url)
    try:
        await upgrade_to_head(db)
        async with db.transaction() as conn:
            await conn.execute(text("DROP INDEX ix_jobs_account_id_id"))
            await conn.execute(text("ALTER TABLE jobs ADD COLUMN stray INTEGER"))
        async with db.read() as conn:
            differences = await conn.run_sync(schema_differences)
        added_indexes = {d[1].name for d in differences if d[0] == "add_index"}
        removed_columns = {(d[2], d[3].name) for d in differences if d[0] == "remove_column"}
        assert added_indexes == {"ix_jobs_account_id_id"}
        assert removed_columns == {("jobs", "stray")}
        # Still "current" by revision: only the comparison can see drift.
        assert await schema_is_current(db)
    finally:
        await db.dispose()
