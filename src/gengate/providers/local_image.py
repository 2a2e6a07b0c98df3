"""`local-image`: procedural art shaped by the prompt and seed, as PNG or WebP."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from PIL import Image

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import render
from gengate.providers.base import GenerationContext, GenerationResult, Provider

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp"}


def default_seed(prompt: str) -> int:
    """The seed used when the input names none: stable for the prompt."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def encode(pixels: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "RGB")
    if fmt == "webp":
        image.save(buffer, format="WEBP", quality=90, method=4)
    else:
        image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def render_encoded(
    prompt: str, seed: int, width: int, height: int, index: int, fmt: str, *, stop: threading.Event
) -> bytes:
    return encode(render(prompt, seed, width, height, index=index, stop=stop), fmt)


class LocalImageProvider(Provider):
    modality = "image"
    description = "Procedural art on the CPU, shaped by the prompt and seed (PNG or WebP)."
    price = Price(PriceUnit.IMAGE, Decimal(1))

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "minLength": 1, "maxLength": 10_000},
                "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                "width": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "height": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "format": {"type": "string", "enum": ["png", "webp"], "default": "png"},
            },
        }

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return int(model_input.get("num_images", 1))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        seed = int(data.get("seed", default_seed(prompt)))
        width, height = int(data["width"]), int(data["height"])
        count, fmt = int(data["num_images"]), str(data["format"])
        for index in range(count):
            encoded = await ctx.run_cpu(render_encoded, prompt, seed, width, height, index, fmt)
            await ctx.save_output(encoded, CONTENT_TYPES[fmt], width=width, height=height)
            ctx.progress(100 * (index + 1) / count)
        return GenerationResult(units=count)
