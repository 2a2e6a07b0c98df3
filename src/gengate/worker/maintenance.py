"""Periodic sweeps: rescue lapsed leases, expire old queued jobs, apply Cancel-After,
purge spent idempotency keys, prune finished jobs past their retention, delete output
and upload files past theirs (the janitor). Safe to run in several processes at once:
every change is a guarded UPDATE, so two sweepers never both apply one."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import timedelta

from gengate.services import assets, lifecycle, uploads
from gengate.services.gateway import Gateway
from gengate.store import idempotency
from gengate.store import jobs as job_store

logger = logging.getLogger("gengate.maintenance")
PURGE_INTERVAL_S = 3600.0
PRUNE_BATCH = 200


class Maintenance:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._rng = random.Random()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sweep(self) -> None:
        """One pass of every sweep (also used directly by tests)."""
        while await lifecycle.rescue_lapsed_leases(self.gw, self._rng) >= lifecycle.SWEEP_BATCH:
            pass
        while await lifecycle.apply_cancel_after(self.gw) >= lifecycle.SWEEP_BATCH:
            pass
        while await lifecycle.expire_queued(self.gw) >= lifecycle.SWEEP_BATCH:
            pass
        await self.delete_expired_files()
        if time.monotonic() - self._last_purge > PURGE_INTERVAL_S:
            self._last_purge = time.monotonic()
            async with self.gw.db.transaction() as conn:
                await idempotency.purge_expired(conn, now=self.gw.clock())
            await self.prune_finished_jobs()

    async def delete_expired_files(self) -> int:
        """The janitor: delete output files past their retention (their jobs' records
        then show them expired) and uploads past `upload_ttl_s`, a batch at a time."""
        deleted = 0
        sweeps = (
            (assets.expire_outputs, assets.SWEEP_BATCH),
            (uploads.expire_uploads, uploads.SWEEP_BATCH),
        )
        for expire, full_batch in sweeps:
            while True:
                batch = await expire(self.gw)
                deleted += batch
                if batch < full_batch:
                    break
        return deleted

    async def prune_finished_jobs(self) -> int:
        """Delete finished job records past `job_retention_days`, in small batches so
        no transaction holds the writer for long. The hot indexes are partial (queued,
        running), so pruning keeps the table small rather than the claim path fast."""
        cutoff = self.gw.clock() - timedelta(days=self.gw.settings.job_retention_days)
        pruned = 0
        while True:
            async with self.gw.db.transaction() as conn:
                batch = await job_store.prune_finished(
                    conn, completed_before=cutoff, limit=PRUNE_BATCH
                )
            pruned += batch
            if batch < PRUNE_BATCH:
                return pruned

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("maintenance sweep failed")
            await asyncio.sleep(self.gw.settings.reaper_interval_s)
