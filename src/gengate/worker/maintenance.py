"""Periodic sweeps: rescue lapsed leases, expire old queued jobs, apply Cancel-After,
purge spent idempotency keys. Safe to run in several processes at once: every
change is a guarded UPDATE, so two sweepers never both apply one."""

from __future__ import annotations

import asyncio
import logging
import random
import time

from gengate.services import lifecycle
from gengate.services.gateway import Gateway
from gengate.store import idempotency

logger = logging.getLogger("gengate.maintenance")
PURGE_INTERVAL_S = 3600.0


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
        if time.monotonic() - self._last_purge > PURGE_INTERVAL_S:
            self._last_purge = time.monotonic()
            async with self.gw.db.transaction() as conn:
                await idempotency.purge_expired(conn, now=self.gw.clock())

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("maintenance sweep failed")
            await asyncio.sleep(self.gw.settings.reaper_interval_s)
