"""LISTEN/NOTIFY between the processes of a PostgreSQL deployment.

One dedicated connection per process listens on one channel and sends what this
process announces, batched: notifications pending at the same moment go out in one
statement. Messages are hints (see services.notifications); when the connection
drops, the relay reconnects with backoff and waiters fall back to polling meanwhile.

Message forms (`<origin>` is the sending process, which ignores its own echoes):
    <origin> j <job hex> <account hex> <model> <status>
    <origin> q <model>
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import asyncpg

from gengate.services.notifications import JobChange, Notifier

CHANNEL = "gengate_events"
logger = logging.getLogger("gengate.relay")
MAX_BACKOFF_S = 5.0


class PostgresRelay:
    def __init__(self, dsn: str, notifier: Notifier) -> None:
        self._dsn = dsn
        self._notifier = notifier
        self._origin = uuid.uuid4().hex[:12]
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-relay")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    # -- sending ----------------------------------------------------------------------------

    def send_job(self, change: JobChange) -> None:
        self._queue(f"j {change.job_id.hex} {change.account_id.hex} {change.model} {change.status}")

    def send_queue(self, model: str) -> None:
        self._queue(f"q {model}")

    def _queue(self, message: str) -> None:
        self._pending.append(f"{self._origin} {message}")
        self._wake.set()

    # -- receiving ----------------------------------------------------------------------------

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parts = payload.split(" ")
        if len(parts) < 3 or parts[0] == self._origin:
            return
        try:
            if parts[1] == "q":
                self._notifier.deliver_queue(parts[2])
            elif parts[1] == "j" and len(parts) == 6:
                self._notifier.deliver_job(
                    JobChange(uuid.UUID(parts[2]), uuid.UUID(parts[3]), parts[4], parts[5])
                )
        except ValueError:
            logger.warning("ignoring malformed notification", extra={"payload": payload[:200]})

    # -- the connection -------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._connect()
                backoff = 0.1
                await self._send_forever()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._connected.clear()
                await self._close()
                logger.warning("notification relay disconnected: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _connect(self) -> None:
        self._connection = await asyncpg.connect(self._dsn, timeout=5)
        await self._connection.add_listener(CHANNEL, self._on_notification)
        # A dropped connection wakes the sender, which notices and reconnects.
        self._connection.add_termination_listener(lambda _conn: self._wake.set())
        self._connected.set()

    async def _send_forever(self) -> None:
        assert self._connection is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._connection.is_closed():
                raise asyncpg.InterfaceError("connection closed")
            batch, self._pending = self._pending, []
            if batch:
                await self._connection.execute(
                    "SELECT pg_notify($1, message) FROM unnest($2::text[]) AS message",
                    CHANNEL,
                    batch,
                )

    async def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close(timeout=2)
            self._connection = None
