"""Connections and transactions for SQLite (embedded) and PostgreSQL (cluster).

Store functions take a `DbConnection`: anything with `await conn.execute(statement)`,
`await conn.run_sync(fn)` and `conn.dialect`. On PostgreSQL that is SQLAlchemy's
`AsyncConnection` over asyncpg.

On SQLite it is a synchronous SQLAlchemy connection with an async face
(`SQLiteConnection`), used from the event loop's own thread. A primary-key read
in SQLite takes microseconds, while a hop through a driver thread per statement
(aiosqlite) costs more than the query itself, several times per statement. So:

- reads use one autocommit connection; WAL lets them run beside the writer and
  they never wait for locks held by it;
- writes use one connection, one transaction at a time (an asyncio lock), opened
  with `BEGIN IMMEDIATE`; only another process (the CLI) can make them wait;
- the WAL is checkpointed by a background thread, not inside a commit, so no
  commit on the event loop pays for copying pages back into the database file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio.to_thread
import orjson
from sqlalchemy import Connection, Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gengate.store.types import AnyRow

T = TypeVar("T")

#: How long a write waits for another process's write lock (SQLite).
SQLITE_WRITE_BUSY_TIMEOUT_MS = 10_000
#: Readers never wait on writers in WAL mode; this only covers WAL recovery.
SQLITE_READ_BUSY_TIMEOUT_MS = 1_000
CHECKPOINT_INTERVAL_S = 1.0


class Rows(Protocol):
    """What store functions read from a statement's result."""

    def first(self) -> AnyRow | None: ...

    def one(self) -> AnyRow: ...

    def all(self) -> Sequence[AnyRow]: ...

    def scalar(self) -> Any: ...

    def scalar_one(self) -> Any: ...


class DbConnection(Protocol):
    """What store functions need from a connection."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, statement: Executable, parameters: Any = None) -> Rows: ...

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T: ...


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def database_url(url: str, *, asynchronous: bool) -> URL:
    """Map `sqlite:///…` and `postgresql://…` to the drivers gengate uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg" if asynchronous else "postgresql")
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


class BufferedRows:
    """Rows fetched in full as the statement ran, so interleaved coroutines that use the
    same SQLite connection never share an open cursor."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[AnyRow]) -> None:
        self._rows = rows

    def first(self) -> AnyRow | None:
        return self._rows[0] if self._rows else None

    def one(self) -> AnyRow:
        if len(self._rows) != 1:
            raise (
                NoResultFound("expected one row")
                if not self._rows
                else MultipleResultsFound("expected one row")
            )
        return self._rows[0]

    def all(self) -> Sequence[AnyRow]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


class SQLiteConnection:
    """A synchronous SQLAlchemy connection with the async face of `DbConnection`.

    Results are buffered before `execute` returns, so interleaved coroutines never
    share an open cursor.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def dialect(self) -> Dialect:
        return self._connection.dialect

    async def execute(self, statement: Executable, parameters: Any = None) -> Rows:
        result = self._connection.execute(statement, parameters)
        return BufferedRows(result.all() if result.returns_rows else [])

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._connection, *args)


def _sqlite_engine(url: URL, *, busy_timeout_ms: int, begin: str | None) -> Engine:
    engine = create_engine(
        url,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_reset_on_return=None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={busy_timeout_ms}",
            "wal_autocheckpoint=0",
        ):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if begin is not None:
            connection.exec_driver_sql(begin)

    return engine


class Database:
    """The database of one deployment."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = database_url(url, asynchronous=True)
        self.dialect = self.url.get_backend_name()
        self._engine: AsyncEngine | None = None
        self._sqlite_writer: Engine | None = None
        self._sqlite_reader: Engine | None = None
        self._write_connection: Connection | None = None
        self._read_connection: Connection | None = None
        self._write_lock = asyncio.Lock()
        self._checkpointer: asyncio.Task[None] | None = None
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._sqlite_writer = _sqlite_engine(
                self.url, busy_timeout_ms=SQLITE_WRITE_BUSY_TIMEOUT_MS, begin="BEGIN IMMEDIATE"
            )
            self._sqlite_reader = _sqlite_engine(
                self.url, busy_timeout_ms=SQLITE_READ_BUSY_TIMEOUT_MS, begin=None
            )
        else:
            self._engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                json_serializer=_json_dumps,
                json_deserializer=orjson.loads,
                connect_args={"server_settings": {"application_name": f"gengate:{os.getpid()}"}},
            )

    @property
    def sync_url(self) -> str:
        """The URL as libpq and asyncpg understand it (PostgreSQL)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (PostgreSQL only)."""
        assert self._engine is not None, "SQLite databases have no async engine"
        return self._engine

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[DbConnection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        if self._engine is not None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            connection = self._sqlite_write_connection()
            with connection.begin():
                yield SQLiteConnection(connection)
            self._start_checkpointer()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[DbConnection]:
        """A connection for reads (autocommit on SQLite: each statement sees the latest
        committed state)."""
        if self._engine is not None:
            async with self._engine.connect() as conn:
                yield conn
            return
        yield SQLiteConnection(self._sqlite_read_connection())

    async def run_migration(self, fn: Callable[[Connection], None]) -> None:
        """Run `fn` (Alembic) on a connection that is not in a transaction."""
        if self._engine is not None:
            async with self._engine.connect() as conn:
                await conn.run_sync(fn)
                await conn.commit()
            return
        assert self._sqlite_writer is not None
        async with self._write_lock:
            await anyio.to_thread.run_sync(self._migrate_sqlite, fn)

    def _migrate_sqlite(self, fn: Callable[[Connection], None]) -> None:
        assert self._sqlite_writer is not None
        with self._sqlite_writer.connect() as connection:
            # A migration that rebuilds a table (SQLite's way to alter one) must not
            # cascade deletes into the rows that point at it (Alembic's advice).
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                fn(connection)
                connection.commit()
            finally:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")

    def _sqlite_write_connection(self) -> Connection:
        if self._write_connection is None:
            assert self._sqlite_writer is not None
            self._write_connection = self._sqlite_writer.connect()
        return self._write_connection

    def _sqlite_read_connection(self) -> Connection:
        if self._read_connection is None:
            assert self._sqlite_reader is not None
            self._read_connection = self._sqlite_reader.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return self._read_connection

    # -- WAL checkpoints, off the event loop ----------------------------------------------

    def _start_checkpointer(self) -> None:
        if self._checkpointer is None or self._checkpointer.done():
            self._checkpointer = asyncio.get_running_loop().create_task(
                self._checkpoint_loop(), name="sqlite-checkpoint"
            )

    async def _checkpoint_loop(self) -> None:
        assert self.url.database is not None
        path = self.url.database
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            await anyio.to_thread.run_sync(_checkpoint, path)

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        if self._engine is not None:
            await self._engine.dispose()
        for connection in (self._write_connection, self._read_connection):
            if connection is not None:
                connection.close()
        self._write_connection = self._read_connection = None
        for engine in (self._sqlite_writer, self._sqlite_reader):
            if engine is not None:
                engine.dispose()


def _checkpoint(path: str) -> None:
    """Copy committed WAL pages into the database file without blocking anyone."""
    connection = sqlite3.connect(path, timeout=SQLITE_READ_BUSY_TIMEOUT_MS / 1000)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        connection.close()
