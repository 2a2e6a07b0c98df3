"""Finished runs recorded in batches.

A worker that runs many short jobs spends most of its time on the round trips of
recording their outcomes. Runs that produced their outputs hand them to the
`CompletionRecorder`, which writes whatever has accumulated in one transaction:
terminal status under each run's lease, settlement, output rows, webhook outbox.
Nothing waits to fill a batch — a lone completion is written at once, and the ones
that finish while it is being written form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from gengate.services import lifecycle
from gengate.services.gateway import Gateway
from gengate.store import outputs as output_store
from gengate.store.jobs import Finish, JobRow

logger = logging.getLogger("gengate.worker")
MAX_BATCH = 64


@dataclass
class _Pending:
    finish: Finish
    outputs: list[dict[str, Any]]
    future: asyncio.Future[JobRow | None]


class CompletionRecorder:
    def __init__(self, gw: Gateway, *, max_batch: int = MAX_BATCH) -> None:
        self.gw = gw
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="completions")

    async def stop(self) -> None:
        """Stop, then write whatever is still pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._write_pending()

    async def record(self, finish: Finish, outputs: list[dict[str, Any]]) -> JobRow | None:
        """The job as recorded, or None when its lease had ended (the result is void)."""
        future: asyncio.Future[JobRow | None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(finish, outputs, future))
        self._wake.set()
        return await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_pending()

    async def _write_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            await self._write(batch)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            async with self.gw.db.transaction() as conn:
                rows = await lifecycle.complete_runs(
                    conn, [item.finish for item in batch], now=self.gw.clock()
                )
                done: dict[uuid.UUID, JobRow] = {row.id: row for row in rows}
                await output_store.insert_outputs(
                    conn,
                    [o for item in batch if item.finish.job_id in done for o in item.outputs],
                )
        except Exception as exc:
            # The runs' leases will lapse and the reaper will requeue their jobs.
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item in batch:
            if not item.future.done():
                item.future.set_result(done.get(item.finish.job_id))
