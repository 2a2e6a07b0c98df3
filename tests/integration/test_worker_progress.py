"""Progress reports are throttled before they reach the database, yet the job's record
shows progress while it runs and ends at 100."""

from __future__ import annotations

import asyncio
import time

from gengate.services.gateway import Gateway
from tests.conftest import Caller
from tests.integration.test_providers import read_job, running_worker, submit

STEPS = 100


async def test_progress_is_throttled_and_ends_at_100(gateway: Gateway, caller: Caller) -> None:
    job = await submit(
        gateway, caller, "echo", {"prompt": "p", "latency_ms": 700, "progress_steps": STEPS}
    )
    assert job.version == 1
    seen: list[int] = []

    async with running_worker(gateway, "echo"):
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            row = await read_job(gateway, job.id)
            if row.status == "running":
                seen.append(row.progress)
            if row.status not in ("queued", "running") or loop.time() > deadline:
                break
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started

    assert row.status == "succeeded"
    assert row.progress == 100
    # The record moved while the job ran...
    assert any(0 < progress < 100 for progress in seen)
    # ...but far fewer writes than progress calls: claim + flushes + completion.
    progress_writes = row.version - 1 - 2
    interval = gateway.settings.progress_interval_s
    assert 1 <= progress_writes <= elapsed / interval + 2
    assert progress_writes < STEPS / 3
