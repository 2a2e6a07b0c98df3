"""Helpers shared by the submit, money, idempotency and pagination tests: reading an
account's money and jobs straight from the database, opening a gateway with other
settings, registering a test model, and waiting on a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import func, select

from gengate.config import ModelConfig
from gengate.domain.money import Price, PriceUnit
from gengate.providers.base import GenerationContext, GenerationResult, Provider
from gengate.providers.registry import Model, ModelCatalog
from gengate.services.gateway import Gateway
from gengate.store import accounts as account_store
from gengate.store.schema import jobs, ledger_entries
from gengate.store.types import AnyRow
from tests.conftest import fast_settings


@dataclass(frozen=True, slots=True)
class Balances:
    balance_micro: int
    reserved_micro: int

    @property
    def available_micro(self) -> int:
        return self.balance_micro - self.reserved_micro


async def balances(gw: Gateway, account_id: uuid.UUID) -> Balances:
    async with gw.db.read() as conn:
        row = await account_store.get_account(conn, account_id)
    assert row is not None
    return Balances(row.balance_micro, row.reserved_micro)


async def ledger_rows(gw: Gateway, account_id: uuid.UUID) -> list[AnyRow]:
    """The account's ledger, oldest first."""
    async with gw.db.read() as conn:
        result = await conn.execute(
            select(ledger_entries)
            .where(ledger_entries.c.account_id == account_id)
            .order_by(ledger_entries.c.id)
        )
    return list(result.all())


async def job_rows(gw: Gateway, account_id: uuid.UUID | None = None) -> list[AnyRow]:
    query = select(jobs).order_by(jobs.c.id)
    if account_id is not None:
        query = query.where(jobs.c.account_id == account_id)
    async with gw.db.read() as conn:
        return list((await conn.execute(query)).all())


async def count_active_jobs(gw: Gateway) -> int:
    async with gw.db.read() as conn:
        result = await conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.status.in_(["queued", "running"]))
        )
    return int(result.scalar_one())


def ledger_kinds(rows: list[AnyRow], job_id: uuid.UUID) -> dict[str, list[int]]:
    """kind → amounts of the ledger entries of one job."""
    kinds: dict[str, list[int]] = {}
    for row in rows:
        if row.job_id == job_id:
            kinds.setdefault(row.kind, []).append(row.amount_micro)
    return kinds


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str
) -> None:
    """Poll `condition` until it holds; fail the test after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def open_gateway(
    database_url: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[Gateway]:
    """A gateway on the test's database with settings the shared fixture does not use."""
    gw = await Gateway.open(fast_settings(data_dir, database_url=database_url, **overrides))
    try:
        yield gw
    finally:
        await gw.close()


class MeteredProvider(Provider):
    """A test backend that reserves `estimate` units and reports `report` units, as a
    third-party provider might: including more than it estimated, or nonsense."""

    modality: ClassVar[str] = "image"
    description: ClassVar[str] = "test model with declared estimate and reported usage"
    price: ClassVar[Price] = Price(PriceUnit.IMAGE, Decimal(1))  # 10,000 micro per unit
    default_concurrency: ClassVar[int | None] = 8

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "estimate": {"type": "integer", "minimum": 0, "default": 1},
                # Any number, or a value no price can be computed from.
                "report": {"anyOf": [{"type": "number"}, {"enum": ["nan", "inf"]}], "default": 1},
                "partial": {"type": "boolean", "default": False},
            },
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return int(model_input.get("estimate", 1))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        await ctx.save_output(b"not really an image", "image/png", width=1, height=1)
        return GenerationResult(
            units=float(ctx.input["report"]), partial=bool(ctx.input["partial"])
        )


def add_model(gw: Gateway, model_id: str, provider: Provider, **config: Any) -> Model:
    """Serve one more model from this gateway, beside the configured ones."""
    model = Model(model_id, provider, ModelConfig(**config), provider.default_concurrency or 1)
    gw.catalog = ModelCatalog({**{m.id: m for m in gw.catalog}, model_id: model})
    return model
