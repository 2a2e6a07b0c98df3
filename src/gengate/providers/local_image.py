"""`local-image`: procedural art shaped by the prompt and seed, as PNG or WebP; with
`image_url`, the input picture restyled by the prompt and seed (`restyle.py`)."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import render
from gengate.providers.base import GenerationContext, GenerationResult, Provider, prompt_schema
from gengate.providers.restyle import prepare_input, restyle

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp"}
IMAGE_INPUT_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


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


def restyle_encoded(
    pixels: NDArray[np.uint8],
    prompt: str,
    seed: int,
    index: int,
    fmt: str,
    *,
    stop: threading.Event,
) -> bytes:
    return encode(restyle(pixels, prompt, seed, index=index, stop=stop), fmt)


def prepare_input_pixels(
    data: bytes, width: int, height: int, *, stop: threading.Event
) -> NDArray[np.uint8]:
    return prepare_input(data, width, height)


class LocalImageProvider(Provider):
    modality = "image"
    description = (
        "Procedural art on the CPU, shaped by the prompt and seed (PNG or WebP); with "
        "`image_url`, that picture restyled by the prompt and seed."
    )
    price = Price(PriceUnit.IMAGE, Decimal(1))

    def input_schema(self) -> dict[str, Any]:
        return prompt_schema(
            {
                "width": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "height": {"type": "integer", "minimum": 64, "maximum": 2048, "default": 512},
                "num_images": {"type": "integer", "minimum": 1, "maximum": 4, "default": 1},
                "format": {"type": "string", "enum": ["png", "webp"], "default": "png"},
                "image_url": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2048,
                    "description": (
                        "A picture to restyle (PNG, JPEG or WebP): an upload's or output's "
                        "url, or an http(s) URL the gateway may fetch."
                    ),
                },
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return int(model_input.get("num_images", 1))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        seed = int(data.get("seed", default_seed(prompt)))
        width, height = int(data["width"]), int(data["height"])
        count, fmt = int(data["num_images"]), str(data["format"])
        pixels: NDArray[np.uint8] | None = None
        if data.get("image_url"):
            media = await ctx.fetch_input(
                str(data["image_url"]), field="image_url", accept=IMAGE_INPUT_TYPES
            )
            pixels = await ctx.run_cpu(prepare_input_pixels, media.data, width, height)
        for index in range(count):
            if pixels is None:
                encoded = await ctx.run_cpu(render_encoded, prompt, seed, width, height, index, fmt)
            else:
                encoded = await ctx.run_cpu(restyle_encoded, pixels, prompt, seed, index, fmt)
            await ctx.save_output(encoded, CONTENT_TYPES[fmt], width=width, height=height)
            ctx.progress(100 * (index + 1) / count)
        return GenerationResult(units=count)
