"""Progress reports from CPU work running in a worker thread.

`GenerationContext.progress` belongs to the event loop (it schedules a throttled
database write), so code running under `ctx.run_cpu` must not call it directly. A
`ThreadProgress` is made on the loop, handed to the thread, and hops each report
back onto the loop with `call_soon_threadsafe`. Reports queued before the thread
returns run before the awaiting coroutine resumes, so none lands after the job ends.
"""

from __future__ import annotations

import asyncio

from gengate.providers.base import GenerationContext


class ThreadProgress:
    """Maps a fraction in [0, 1] of one stage to the job's percent in [start, end]."""

    def __init__(self, ctx: GenerationContext, *, start: float = 0.0, end: float = 100.0) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._start = start
        self._end = end

    def __call__(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, fraction))
        percent = self._start + (self._end - self._start) * fraction
        self._loop.call_soon_threadsafe(self._ctx.progress, percent)
