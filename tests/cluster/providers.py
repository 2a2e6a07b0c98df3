"""Test-only providers loaded by worker processes by import path
(`provider = "tests.cluster.providers:CountingProvider"`). They record what they see
in files, so a test can observe several processes at once."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from gengate.domain.money import Price, PriceUnit
from gengate.providers.base import GenerationContext, GenerationResult, Provider


def _update(path: Path, change: Any) -> Any:
    """Read-modify-write a JSON file under an exclusive lock (works across processes)."""
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
            result = change(state)
            path.write_text(json.dumps(state))
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class RecordingProvider(Provider):
    """Sleeps `latency_ms` and records, in `params.state_path`: how many runs are in
    flight right now across all processes and the most ever seen, the order in which
    jobs started, and which runs were cancelled (with the time)."""

    modality = "image"
    description = "Test provider that records concurrency, start order and cancellations."
    price = Price(PriceUnit.RUN, Decimal("0.1"))
    default_concurrency = 8

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string"},
                "latency_ms": {"type": "integer", "minimum": 0, "default": 200},
            },
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return 1

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        path = Path(self.params["state_path"])

        def enter(state: dict[str, Any]) -> None:
            state["running"] = state.get("running", 0) + 1
            state["max_running"] = max(state.get("max_running", 0), state["running"])
            state.setdefault("started", []).append([ctx.job_id, os.getpid(), time.time()])

        def leave(state: dict[str, Any]) -> None:
            state["running"] -= 1

        _update(path, enter)
        try:
            await asyncio.sleep(int(ctx.input.get("latency_ms", 200)) / 1000)
        except asyncio.CancelledError:
            _update(path, lambda s: s.setdefault("cancelled", {}).update({ctx.job_id: time.time()}))
            raise
        finally:
            _update(path, leave)
        await ctx.save_output(b"\x89PNG\r\n\x1a\n", "image/png", width=1, height=1)
        return GenerationResult(units=1)


def read_state(path: Path) -> dict[str, Any]:
    return _update(path, lambda state: json.loads(json.dumps(state)))  # type: ignore[no-any-return]
