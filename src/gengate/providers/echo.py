"""`echo`: a configurable test model that returns a small PNG.

Input: `latency_ms` (sleep, interruptible), `fail` (fail with provider_error),
`progress_steps` (report progress in that many steps), and `fail_attempts` (fail
retryably on the first N attempts, to exercise retries). Operator params:
`max_latency_ms` caps the latency, `failure_rate` fails that share of jobs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import random
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from PIL import Image

from gengate.domain.money import Price, PriceUnit
from gengate.providers.base import (
    GenerationContext,
    GenerationError,
    GenerationResult,
    Provider,
    RetryableError,
    prompt_schema,
)

SIZE = 64


@functools.lru_cache(maxsize=512)
def _png(rgb: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


class EchoProvider(Provider):
    modality = "image"
    description = "Test model: waits `latency_ms`, then returns a small PNG coloured by the prompt."
    price = Price(PriceUnit.RUN, Decimal("0.1"))
    default_concurrency = 64

    def input_schema(self) -> dict[str, Any]:
        return prompt_schema(
            {
                "latency_ms": {"type": "integer", "minimum": 0, "maximum": 600_000, "default": 0},
                "fail": {"type": "boolean", "default": False},
                "progress_steps": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
                "fail_attempts": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return 1

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        latency_s = min(int(data.get("latency_ms", 0)), self._max_latency_ms()) / 1000
        steps = int(data.get("progress_steps", 0))
        if steps:
            for step in range(1, steps + 1):
                await asyncio.sleep(latency_s / steps)
                ctx.progress(100 * step / steps)
        elif latency_s:
            await asyncio.sleep(latency_s)
        if ctx.attempt <= int(data.get("fail_attempts", 0)):
            raise RetryableError(f"echo: failing attempt {ctx.attempt} as asked")
        if data.get("fail") or random.random() < float(self.params.get("failure_rate", 0)):
            raise GenerationError("echo: failing as asked")
        digest = hashlib.sha256(f"{data['prompt']}|{data.get('seed', 0)}".encode()).digest()
        await ctx.save_output(
            _png((digest[0], digest[1], digest[2])), "image/png", width=SIZE, height=SIZE
        )
        return GenerationResult(units=1)

    def _max_latency_ms(self) -> int:
        return int(self.params.get("max_latency_ms", 600_000))

    def limits(self) -> dict[str, Any]:
        return {"max_latency_ms": self._max_latency_ms()}
