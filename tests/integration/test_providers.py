"""Test-only providers and helpers for the worker tests (no tests of its own).

The providers record what happens *inside* `generate()` (when each attempt starts,
how many runs overlap, when the task was cancelled, whether the cancel hook ran),
so the worker tests assert on what a backend actually saw rather than inferring it
from timestamps in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import select

from gengate.config import ModelConfig
from gengate.domain.money import Price, PriceUnit
from gengate.providers.base import (
    GenerationContext,
    GenerationError,
    GenerationResult,
    Provider,
    RetryableError,
)
from gengate.providers.registry import Model, ModelCatalog
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.store import accounts as account_store
from gengate.store import jobs as job_store
from gengate.store import ledger
from gengate.store.jobs import JobRow
from gengate.store.schema import outputs
from gengate.worker.maintenance import Maintenance
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller

PRICE_MICRO = 10_000  # every test provider costs 1 credit per run


@dataclass(frozen=True, slots=True)
class Start:
    label: str
    attempt: int
    at: float  # time.monotonic()


class ProbeProvider(Provider):
    """Does what its input asks and records it.

    Input: `label` (names the job in the records), `sleep_s` (take this long),
    `block` (wait until the test sets `gate`), `retryable_failures` (fail
    retryably on attempts up to this number), `fatal` (fail for good).
    """

    modality: ClassVar[str] = "image"
    description: ClassVar[str] = "test model that records what the worker makes it do"
    price: ClassVar[Price] = Price(PriceUnit.RUN, Decimal(1))
    default_concurrency: ClassVar[int | None] = 4

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.gate = asyncio.Event()
        self.starts: list[Start] = []
        self.finished: list[str] = []
        self.running = 0
        self.max_running = 0
        self.cancelled_at: dict[str, float] = {}
        self.hook_called_at: dict[str, float] = {}

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["label"],
            "properties": {
                "label": {"type": "string", "minLength": 1},
                "sleep_s": {"type": "number", "minimum": 0, "default": 0},
                "block": {"type": "boolean", "default": False},
                "retryable_failures": {"type": "integer", "minimum": 0, "default": 0},
                "fatal": {"type": "boolean", "default": False},
            },
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return 1

    def labels_started(self) -> list[str]:
        return [start.label for start in self.starts]

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        label = str(ctx.input["label"])
        self.starts.append(Start(label, ctx.attempt, time.monotonic()))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if ctx.input["sleep_s"]:
                await asyncio.sleep(float(ctx.input["sleep_s"]))
            if ctx.input["block"]:
                await self.gate.wait()
            if ctx.attempt <= int(ctx.input["retryable_failures"]):
                raise RetryableError(f"probe: attempt {ctx.attempt} fails as asked")
            if ctx.input["fatal"]:
                raise GenerationError("probe: fails for good as asked")
            await ctx.save_output(b"probe output", "image/png", width=1, height=1)
            self.finished.append(label)
            return GenerationResult(units=1)
        except asyncio.CancelledError:
            self.cancelled_at[label] = time.monotonic()
            raise
        finally:
            self.running -= 1

    async def cancel(self, ctx: GenerationContext) -> None:
        self.hook_called_at[str(ctx.input["label"])] = time.monotonic()


class StubbornProvider(ProbeProvider):
    """Ignores cancellation: saves an output and reports success anyway, as a backend
    that cannot be interrupted would. Its late result must not change the job."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.saved_keys: list[str] = []

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        label = str(ctx.input["label"])
        self.starts.append(Start(label, ctx.attempt, time.monotonic()))
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled_at[label] = time.monotonic()
        saved = await ctx.save_output(b"late output", "image/png", width=1, height=1)
        self.saved_keys.append(saved.storage_key)
        self.finished.append(label)
        return GenerationResult(units=1)


class SpinProvider(ProbeProvider):
    """CPU-bound work in `ctx.run_cpu`: a loop that checks the stop signal, as an
    encoder or synthesiser would between frames."""

    LIMIT_S: ClassVar[float] = 20.0

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.spinning = threading.Event()
        self.loop_thread: int | None = None
        self.spin_thread: int | None = None
        self.stop_seen_at: float | None = None

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        label = str(ctx.input["label"])
        self.starts.append(Start(label, ctx.attempt, time.monotonic()))
        self.loop_thread = threading.get_ident()
        try:
            await ctx.run_cpu(self._spin)
        except asyncio.CancelledError:
            self.cancelled_at[label] = time.monotonic()
            raise
        self.finished.append(label)
        return GenerationResult(units=1)

    def _spin(self, *, stop: threading.Event) -> None:
        self.spin_thread = threading.get_ident()
        self.spinning.set()
        began = time.monotonic()
        while time.monotonic() - began < self.LIMIT_S:
            if stop.is_set():
                self.stop_seen_at = time.monotonic()
                return
            sum(range(2_000))  # a slice of "work" between checks


def install_model(
    gw: Gateway, model_id: str, provider: Provider, *, concurrency: int = 4, **config: Any
) -> Model:
    """Serve one more model from this gateway, beside the configured ones."""
    model = Model(model_id, provider, ModelConfig(**config), concurrency)
    gw.catalog = ModelCatalog({**{m.id: m for m in gw.catalog}, model_id: model})
    return model


async def submit(
    gw: Gateway, caller: Caller, model_id: str, model_input: dict[str, Any], **options: Any
) -> JobRow:
    submission = await job_service.submit_job(
        gw, caller.principal, SubmitRequest(model_id, model_input, **options)
    )
    return submission.job


async def read_job(gw: Gateway, job_id: uuid.UUID) -> JobRow:
    async with gw.db.read() as conn:
        row = await job_store.get_job(conn, job_id)
    assert row is not None
    return row


async def wait_for_job(
    gw: Gateway,
    job_id: uuid.UUID,
    condition: Callable[[JobRow], bool],
    *,
    timeout_s: float,
    what: str,
) -> JobRow:
    """Poll the job's row until `condition` holds; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        row = await read_job(gw, job_id)
        if condition(row):
            return row
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}; job is {row.status} "
                f"(attempts {row.attempts}, error {row.error})"
            )
        await asyncio.sleep(0.02)


async def wait_for_status(
    gw: Gateway, job_id: uuid.UUID, status: str, *, timeout_s: float
) -> JobRow:
    return await wait_for_job(
        gw, job_id, lambda row: row.status == status, timeout_s=timeout_s, what=status
    )


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout_s: float, what: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def sweep_until(
    gw: Gateway,
    job_id: uuid.UUID,
    condition: Callable[[JobRow], bool],
    *,
    timeout_s: float,
    what: str,
) -> JobRow:
    """Run maintenance sweeps (as the janitor would) until the job meets `condition`."""
    maintenance = Maintenance(gw)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        await maintenance.sweep()
        row = await read_job(gw, job_id)
        if condition(row):
            return row
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s sweeping for {what}; job is {row.status}"
            )
        await asyncio.sleep(0.05)


async def output_rows(gw: Gateway, job_id: uuid.UUID) -> list[Any]:
    async with gw.db.read() as conn:
        result = await conn.execute(select(outputs).where(outputs.c.job_id == job_id))
    return list(result.all())


@dataclass(frozen=True, slots=True)
class Money:
    balance_micro: int
    reserved_micro: int


async def money(gw: Gateway, caller: Caller) -> Money:
    async with gw.db.read() as conn:
        row = await account_store.get_account(conn, caller.principal.account_id)
    assert row is not None
    return Money(row.balance_micro, row.reserved_micro)


async def ledger_of(gw: Gateway, caller: Caller, job_id: uuid.UUID) -> dict[str, list[int]]:
    """kind → amounts of one job's ledger entries."""
    async with gw.db.read() as conn:
        entries = await ledger.list_entries(
            conn, account_id=caller.principal.account_id, before=None, limit=1000
        )
    kinds: dict[str, list[int]] = {}
    for entry in entries:
        if entry.job_id == job_id:
            kinds.setdefault(entry.kind, []).append(entry.amount_micro)
    return kinds


async def assert_uncharged(gw: Gateway, caller: Caller, job: JobRow, before: Money) -> None:
    """A failed or cancelled job: no cost, no charge, its reservation released."""
    assert job.cost_micro == 0
    assert await money(gw, caller) == Money(before.balance_micro, before.reserved_micro)
    assert await ledger_of(gw, caller, job.id) == {
        "reserve": [job.reserved_micro],
        "release": [job.reserved_micro],
    }


@contextlib.asynccontextmanager
async def running_worker(
    gw: Gateway,
    *model_ids: str,
    concurrency: int | None = None,
    worker_id: str | None = None,
    grace_s: float = 0.0,
) -> AsyncIterator[WorkerRuntime]:
    """A started worker runtime for these models, stopped when the block ends."""
    runtime = WorkerRuntime(
        gw, [gw.catalog.get(m) for m in model_ids], concurrency=concurrency, worker_id=worker_id
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace_s=grace_s)
