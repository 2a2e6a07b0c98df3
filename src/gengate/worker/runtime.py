"""The worker runtime: one claim loop per model, a heartbeat, and the job runs.

    claim loop (per model) ──claims──► run task (one per job, ≤ the model's concurrency)
          ▲ wake-up: notifier or poll          │ provider.generate(ctx)
          └──────────── slot freed ◄───────────┘ outcome → guarded status change + money
    heartbeat ── renews every lease this worker holds; a lease it no longer holds
                 (cancelled, rescued) interrupts the run

A run ends in exactly one of: success, failure, retry (requeue with backoff), or
interruption (cancelled by a user or Cancel-After, timed out, lease lost, shutdown).
Every write is conditional on the lease token, so a stale run changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from anyio import CapacityLimiter

from gengate.domain.scheduling import retry_backoff_s
from gengate.domain.states import JobStatus
from gengate.providers.base import GenerationError, GenerationResult
from gengate.providers.registry import Model
from gengate.services.gateway import Gateway
from gengate.services.lifecycle import announce, complete_job, job_error, requeue_job
from gengate.services.notifications import JobChange
from gengate.store import queue as queue_store
from gengate.store.jobs import Finish, JobRow
from gengate.worker.completions import CompletionRecorder
from gengate.worker.context import JobContext

logger = logging.getLogger("gengate.worker")
# How often held jobs are checked for changes made elsewhere (a safety net under the
# notifications); well under a second, so cancellation always arrives within one.
CHECK_INTERVAL_S = 0.25


class Interruption(StrEnum):
    CANCELLED = "cancelled"  # the job became terminal elsewhere (user, Cancel-After)
    TIMEOUT = "timeout"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


@dataclass
class Run:
    row: JobRow
    model: Model
    ctx: JobContext
    task: asyncio.Task[None] | None = None
    interruption: Interruption | None = None
    # Set once the provider has returned: from then on only the guarded write decides.
    finalizing: bool = False
    started: float = field(default_factory=time.monotonic)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class WorkerRuntime:
    def __init__(
        self,
        gw: Gateway,
        models: list[Model],
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.gw = gw
        self.models = models
        self.worker_id = worker_id or new_worker_id()
        self._limits = {m.id: concurrency or m.concurrency for m in models}
        self._active: dict[str, int] = {m.id: 0 for m in models}
        self._slot_freed: dict[str, asyncio.Event] = {}
        self._runs: dict[uuid.UUID, Run] = {}
        self._cpu = CapacityLimiter(gw.settings.cpu_threads)
        self._rng = random.Random()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._completions = CompletionRecorder(gw)

    @property
    def is_running(self) -> bool:
        return bool(self._tasks) and not self._stopping.is_set()

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.gw.settings.lease_ttl_s)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.gw.notifier.add_listener(self._on_job_change)
        self._completions.start()
        self._slot_freed = {m.id: asyncio.Event() for m in self.models}
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._claim_loop(m), name=f"claim:{m.id}") for m in self.models
        ]
        self._tasks.append(loop.create_task(self._heartbeat_loop(), name="heartbeat"))
        logger.info(
            "worker started",
            extra={
                "worker_id": self.worker_id,
                "models": list(self._limits),
                "event": "worker.start",
            },
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming, let running jobs finish for `grace_s`, then hand the rest back."""
        grace = self.gw.settings.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        for event in self._slot_freed.values():
            event.set()
        for model in self.models:
            self.gw.notifier.queue_event(model.id).set()
        claimers = [t for t in self._tasks if t.get_name().startswith("claim:")]
        await asyncio.gather(*claimers, return_exceptions=True)
        running = [run.task for run in self._runs.values() if run.task is not None]
        if running:
            await asyncio.wait(running, timeout=grace)
        for run in list(self._runs.values()):
            self._interrupt(run, Interruption.SHUTDOWN)
        remaining = [run.task for run in self._runs.values() if run.task is not None]
        await asyncio.gather(*remaining, return_exceptions=True)
        await self._completions.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.gw.notifier.remove_listener(self._on_job_change)
        logger.info("worker stopped", extra={"worker_id": self.worker_id, "event": "worker.stop"})

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Burst mode: return once no job of these models is runnable or running here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not self._runs and not await self._has_runnable():
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("the queue did not drain in time")

    async def _has_runnable(self) -> bool:
        now = self.gw.clock()
        async with self.gw.db.read() as conn:
            for model in self.models:
                if await queue_store.claimable_count(conn, model=model.id, now=now):
                    return True
        return False

    # -- claiming -------------------------------------------------------------------------

    async def _claim_loop(self, model: Model) -> None:
        wake = self.gw.notifier.queue_event(model.id)
        freed = self._slot_freed[model.id]
        poll_s = self.gw.settings.poll_interval_s
        loop = asyncio.get_running_loop()
        # When the earliest delayed retry becomes runnable (loop time), looked up on poll
        # cycles only: a wake-up per submit must not cost every idle worker a query.
        next_due: float | None = None
        while not self._stopping.is_set():
            free = self._limits[model.id] - self._active[model.id]
            if free <= 0:
                freed.clear()
                await freed.wait()
                continue
            wake.clear()
            try:
                claimed = await self._claim(model, min(free, self.gw.settings.claim_batch))
            except Exception:
                logger.exception("claim failed", extra={"model": model.id})
                await asyncio.sleep(poll_s)
                continue
            for row in claimed:
                self._start_run(model, row)
            if len(claimed) < min(free, self.gw.settings.claim_batch):
                wait_s = poll_s if next_due is None else max(0.001, next_due - loop.time())
                try:
                    await asyncio.wait_for(wake.wait(), min(poll_s, wait_s))
                except TimeoutError:
                    next_due = await self._next_due(model, loop.time())

    async def _claim(self, model: Model, limit: int) -> list[JobRow]:
        now = self.gw.clock()
        async with self.gw.db.transaction() as conn:
            claimed = await queue_store.claim_jobs(
                conn,
                model=model.id,
                worker_id=self.worker_id,
                limit=limit,
                lease_ttl=self.lease_ttl,
                now=now,
                fleet_limit=model.config.max_running,
            )
        for row in claimed:
            announce(self.gw, row, JobStatus.QUEUED.value)
        return claimed

    async def _next_due(self, model: Model, loop_now: float) -> float | None:
        """When (in loop time) the earliest delayed retry of `model` becomes runnable."""
        now = self.gw.clock()
        try:
            async with self.gw.db.read() as conn:
                due = await queue_store.next_run_after(conn, model=model.id, now=now)
        except Exception:
            logger.exception("could not look up delayed jobs", extra={"model": model.id})
            return None
        return None if due is None else loop_now + (due - now).total_seconds()

    def _start_run(self, model: Model, row: JobRow) -> None:
        ctx = JobContext(self.gw, row, cpu_limiter=self._cpu, logger=logger)
        run = Run(row=row, model=model, ctx=ctx)
        self._runs[row.id] = run
        self._active[model.id] += 1
        self.gw.metrics.running_here.labels(model.id).inc()
        run.task = asyncio.get_running_loop().create_task(self._execute(run), name=f"job:{row.id}")

    # -- running --------------------------------------------------------------------------

    async def _execute(self, run: Run) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(run.row.timeout_s, self._interrupt, run, Interruption.TIMEOUT)
        outcome = "error"
        try:
            try:
                result = await run.model.provider.generate(run.ctx)
            except asyncio.CancelledError:
                if run.interruption is None:
                    raise
                run.finalizing = True
                outcome = await self._interrupted(run)
            except GenerationError as error:
                run.finalizing = True
                outcome = await self._failed(run, error)
            except Exception:
                run.finalizing = True
                run.ctx.logger.exception("provider raised unexpectedly")
                outcome = await self._failed(run, GenerationError("The model failed unexpectedly."))
            else:
                run.finalizing = True
                outcome = await self._succeeded(run, result)
        except Exception:
            # Recording the outcome failed (e.g. the database is down): the lease will
            # lapse and the reaper will requeue the job, so nothing is lost.
            run.ctx.logger.exception("could not record the outcome of the run")
        finally:
            deadline.cancel()
            await run.ctx.close()
            self._runs.pop(run.row.id, None)
            self._active[run.model.id] -= 1
            self.gw.metrics.running_here.labels(run.model.id).dec()
            self.gw.metrics.run_duration.labels(run.model.id, outcome).observe(
                time.monotonic() - run.started
            )
            self._slot_freed[run.model.id].set()

    async def _succeeded(self, run: Run, result: GenerationResult) -> str:
        ctx, row = run.ctx, run.row
        if not (math.isfinite(result.units) and result.units >= 0):
            ctx.logger.error("the provider reported unusable units: %r", result.units)
            return await self._failed(
                run, GenerationError("The model reported an unusable amount of work.")
            )
        now = self.gw.clock()
        target = JobStatus.PARTIAL if result.partial else JobStatus.SUCCEEDED
        stored = [
            {
                "asset_id": o.output_id,
                "storage_key": o.storage_key,
                "content_type": o.content_type,
                "bytes": o.bytes,
                "width": o.width,
                "height": o.height,
                "duration_sec": o.duration_sec,
            }
            for o in ctx.outputs
        ]
        retention = timedelta(days=self.gw.settings.retention_days)
        finish = Finish(
            job_id=row.id,
            lease_token=ctx.lease_token,
            status=target,
            charge_micro=max(0, run.model.price.micro_for(result.units)),
            result={"outputs": stored},
            scenes_completed=ctx.scenes_completed,
            scenes_total=ctx.scenes_total,
        )
        output_rows = [
            {
                "id": uuid.UUID(o.output_id.removeprefix("out_")),
                "job_id": row.id,
                "account_id": row.account_id,
                "position": position,
                "storage_key": o.storage_key,
                "content_type": o.content_type,
                "bytes": o.bytes,
                "width": o.width,
                "height": o.height,
                "duration_sec": o.duration_sec,
                "created_at": now,
                "expires_at": now + retention,
            }
            for position, o in enumerate(ctx.outputs)
        ]
        done = await self._completions.record(finish, output_rows)
        if done is None:
            # Our lease ended while we worked (cancelled or rescued): the result is void.
            await ctx.discard_outputs()
            return "stale"
        announce(self.gw, done, JobStatus.RUNNING.value)
        return target.value

    async def _failed(self, run: Run, error: GenerationError) -> str:
        ctx, row = run.ctx, run.row
        await ctx.discard_outputs()
        now = self.gw.clock()
        async with self.gw.db.transaction() as conn:
            if error.retryable and ctx.attempt < row.max_attempts:
                config = run.model.config
                delay = retry_backoff_s(
                    ctx.attempt, base_s=config.retry_base_s, cap_s=config.retry_cap_s, rng=self._rng
                )
                done = await requeue_job(
                    conn, row.id, lease_token=ctx.lease_token, now=now, delay_s=delay
                )
                outcome = "retry"
            else:
                done = await complete_job(
                    conn,
                    row.id,
                    JobStatus.FAILED,
                    now=now,
                    error=job_error(error.code, error.message),
                    lease_token=ctx.lease_token,
                )
                outcome = "failed"
        if done is None:
            return "stale"
        announce(self.gw, done, JobStatus.RUNNING.value)
        return outcome

    async def _interrupted(self, run: Run) -> str:
        ctx, row = run.ctx, run.row
        reason = run.interruption
        await ctx.discard_outputs()
        if reason in (Interruption.CANCELLED, Interruption.TIMEOUT):
            # Stop the work upstream too (e.g. cancel a remote prediction).
            try:
                await run.model.provider.cancel(ctx)
            except Exception:
                ctx.logger.exception("provider cancel hook failed")
        if reason is Interruption.CANCELLED:
            return "cancelled"
        if reason is Interruption.LEASE_LOST:
            return "lease_lost"
        now = self.gw.clock()
        async with self.gw.db.transaction() as conn:
            if reason is Interruption.TIMEOUT:
                done = await complete_job(
                    conn,
                    row.id,
                    JobStatus.FAILED,
                    now=now,
                    error=job_error("timeout", f"The job ran longer than {row.timeout_s} s."),
                    lease_token=ctx.lease_token,
                )
            else:  # shutdown: hand the job back without spending an attempt
                done = await requeue_job(
                    conn,
                    row.id,
                    lease_token=ctx.lease_token,
                    now=now,
                    delay_s=0,
                    count_attempt=False,
                )
        if done is not None:
            announce(self.gw, done, JobStatus.RUNNING.value)
        return str(reason)

    def _interrupt(self, run: Run, reason: Interruption) -> None:
        if run.interruption is not None or run.finalizing or run.task is None:
            return
        run.interruption = reason
        run.ctx.cancelled.set()
        run.ctx.stop.set()
        run.task.cancel()

    def _on_job_change(self, change: JobChange) -> None:
        run = self._runs.get(change.job_id)
        if run is not None and JobStatus(change.status).is_terminal and run.task is not None:
            # Terminal while we hold it: cancelled by a user or Cancel-After.
            self._interrupt(run, Interruption.CANCELLED)

    # -- leases -----------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Renew leases every third of their lifetime; meanwhile, every CHECK_INTERVAL_S,
        look for held jobs that changed elsewhere (a safety net under the notifications)."""
        renew_every = self.gw.settings.lease_ttl_s / 3
        tick = min(CHECK_INTERVAL_S, renew_every)
        next_renewal = time.monotonic() + renew_every
        while True:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() >= next_renewal:
                    next_renewal = time.monotonic() + renew_every
                    await self._renew()
                elif self._runs:
                    await self._check_held()
            except Exception:
                logger.exception("heartbeat failed", extra={"worker_id": self.worker_id})

    async def _check_held(self) -> None:
        await self._interrupt_changed(
            [(job_id, run.ctx.lease_token) for job_id, run in self._runs.items()]
        )

    async def _interrupt_changed(self, held: list[tuple[uuid.UUID, int]]) -> None:
        """Interrupt the runs among `held` whose job changed elsewhere: cancelled (the
        provider's cancel hook runs) or taken away (rescued after a lapsed lease)."""
        async with self.gw.db.read() as conn:
            changed = await queue_store.changed_elsewhere(conn, held)
        for job_id, status in changed:
            run = self._runs.get(job_id)
            if run is not None:
                terminal = JobStatus(status).is_terminal
                self._interrupt(
                    run, Interruption.CANCELLED if terminal else Interruption.LEASE_LOST
                )

    async def _renew(self) -> None:
        # Judge only the runs that existed before the renewal: a job claimed while it ran
        # holds a fresh lease that the renewal may not have seen.
        before = dict(self._runs)
        async with self.gw.db.transaction() as conn:
            held = await queue_store.renew_leases(
                conn,
                worker_id=self.worker_id,
                job_ids=list(before),
                lease_ttl=self.lease_ttl,
                now=self.gw.clock(),
            )
        tokens = dict(held)
        lost = [
            (job_id, run.ctx.lease_token)
            for job_id, run in before.items()
            if tokens.get(job_id) != run.ctx.lease_token
        ]
        if lost:
            await self._interrupt_changed(lost)
