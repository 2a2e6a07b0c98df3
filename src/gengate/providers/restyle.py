"""Restyling an input picture by a prompt and seed (`local-image` with `image_url`).

The input is decoded (PNG, JPEG or WebP; EXIF orientation applied, transparency laid
over black), cropped to the asked aspect ratio around its centre and scaled to the asked
size. Its brightness, stretched to the full range and given a little of the procedural
field's texture, is posterized into a few bands and mapped through the prompt's palette
(`art.palette`: its colour words and moods); the procedural picture for the same prompt
and seed (`art.render`) and the input's own colours are blended in, and the input's
edges are drawn darker so its shapes stay readable. Pure: no I/O, deterministic for the
input bytes, prompt, seed, size and image index.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import warnings
from typing import Final

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from gengate.providers.art import CALM_WORDS, WILD_WORDS, Cancelled, palette, render
from gengate.providers.base import InvalidInputError

#: The largest input picture decoded, in pixels (a 20 MB file can declare far more).
MAX_INPUT_PIXELS: Final = 40_000_000
# How much each layer weighs in the blend: the palette-mapped bands, the procedural
# picture, the input's own colours.
BANDS_WEIGHT: Final = 0.6
ART_WEIGHT: Final = 0.22
INPUT_WEIGHT: Final = 0.18
EDGE_DARKENING: Final = 0.55
FIELD_TEXTURE: Final = 0.18
LUMA: Final = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

FloatImage = NDArray[np.float32]


def _words(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z]+", prompt.lower()))


def _rng(prompt: str, seed: int, index: int) -> np.random.Generator:
    digest = hashlib.sha256(f"restyle\x00{prompt}\x00{seed}\x00{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def prepare_input(data: bytes, width: int, height: int) -> NDArray[np.uint8]:
    """The input picture as RGB pixels, `height` by `width` by 3: cropped to that aspect
    around the centre and scaled (Lanczos). InvalidInputError when it cannot be decoded
    or is too large."""
    with warnings.catch_warnings():
        # Pillow warns about very large pictures before refusing them; the limit here
        # is lower, so the warning is an error to catch, never a log line.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > MAX_INPUT_PIXELS:
                    raise InvalidInputError(
                        f"image_url: the picture has more than {MAX_INPUT_PIXELS} pixels."
                    )
                # JPEG decodes at a reduced scale directly when that is still large enough
                # (either way round: the EXIF orientation may turn it).
                side = max(width, height)
                opened.draft("RGB", (side, side))
                upright = ImageOps.exif_transpose(opened)
                rgb = _flatten(upright)
        except InvalidInputError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
            raise InvalidInputError("image_url: the picture cannot be decoded.") from None
    fitted = ImageOps.fit(rgb, (width, height), method=Image.Resampling.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency laid over black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(backdrop, rgba).convert("RGB")
    return image.convert("RGB")


def _smooth(values: FloatImage) -> FloatImage:
    """A [1, 2, 1] binomial blur along both axes (edges repeated)."""
    padded = np.pad(values, 1, mode="edge")
    rows = (padded[:-2, :] + 2 * padded[1:-1, :] + padded[2:, :]) / 4
    return np.asarray((rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4, dtype=np.float32)


def _edges(luma: FloatImage) -> FloatImage:
    """Edge strength in [0, 1], so outlines survive the bands. The blur and the noise
    floor (the median gradient) keep JPEG blocks and grain from drawing lines."""
    gy, gx = np.gradient(_smooth(luma))
    magnitude: FloatImage = np.hypot(gx, gy).astype(np.float32)
    floor, top = np.percentile(magnitude, [50, 99])
    span = float(top - floor)
    if span <= 1e-6:
        return np.zeros_like(luma)
    strength: FloatImage = np.clip((magnitude - floor) / span, 0.0, 1.0).astype(np.float32)
    return strength


def restyle(
    pixels: NDArray[np.uint8],
    prompt: str,
    seed: int,
    *,
    index: int = 0,
    stop: threading.Event | None = None,
) -> NDArray[np.uint8]:
    """`pixels` (RGB, as `prepare_input` gives) restyled by `prompt` and `seed`."""

    def checkpoint() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled()

    height, width = pixels.shape[:2]
    source = pixels.astype(np.float32) / 255.0
    art = render(prompt, seed, width, height, index=index, stop=stop).astype(np.float32) / 255.0
    checkpoint()

    rng = _rng(prompt, seed, index)
    words = _words(prompt)
    levels = 3 if words & CALM_WORDS else 7 if words & WILD_WORDS else 5
    colours = palette(prompt, rng, size=levels)
    # Darkest colour for the darkest band (the palette's values are ascending already;
    # sorting by luminance makes it certain).
    colours = colours[np.argsort(colours @ LUMA)]

    luma: FloatImage = (source @ LUMA).astype(np.float32)
    low, high = np.percentile(luma, [1, 99])
    tone = np.clip((luma - low) / max(float(high - low), 1e-3), 0.0, 1.0)
    tone = np.clip(tone + FIELD_TEXTURE * ((art @ LUMA) - 0.5), 0.0, 1.0)
    bands = np.minimum((tone * levels).astype(np.int32), levels - 1)
    mapped = colours[bands]
    checkpoint()

    blended = BANDS_WEIGHT * mapped + ART_WEIGHT * art + INPUT_WEIGHT * source
    blended *= (1.0 - EDGE_DARKENING * _edges(luma))[..., None]
    restyled: NDArray[np.uint8] = (np.clip(blended, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return restyled
