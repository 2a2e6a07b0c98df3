"""Procedural pictures shaped by a prompt and a seed (numpy, vectorised).

The prompt picks the palette (colour words and moods bias the hues; every other
word nudges them by its hash) and the composition (how many bodies, how turbulent
the field); the seed picks everything random. Pure: no I/O, deterministic.
"""

from __future__ import annotations

import hashlib
import re
import threading

import numpy as np
from numpy.typing import NDArray

from gengate.providers.base import GenerationError

# Hue in [0, 1) for words that name a colour or a mood with one.
HUE_WORDS = {
    "red": 0.0,
    "fire": 0.03,
    "sunset": 0.06,
    "orange": 0.08,
    "autumn": 0.09,
    "desert": 0.11,
    "gold": 0.13,
    "yellow": 0.16,
    "sun": 0.14,
    "lime": 0.22,
    "green": 0.33,
    "forest": 0.3,
    "jungle": 0.36,
    "mint": 0.42,
    "teal": 0.48,
    "cyan": 0.5,
    "ice": 0.53,
    "ocean": 0.56,
    "sea": 0.57,
    "sky": 0.58,
    "blue": 0.62,
    "night": 0.66,
    "space": 0.7,
    "indigo": 0.72,
    "violet": 0.77,
    "purple": 0.8,
    "magenta": 0.85,
    "pink": 0.92,
    "rose": 0.95,
}
DARK_WORDS = {"night", "dark", "space", "storm", "shadow", "midnight", "noir"}
CALM_WORDS = {"calm", "still", "quiet", "minimal", "soft", "serene", "peaceful"}
WILD_WORDS = {"storm", "chaos", "wild", "abstract", "fractal", "explosion", "turbulent"}


class Cancelled(GenerationError):
    """The job was cancelled while rendering."""


def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+", prompt.lower())


def _seed_material(prompt: str, seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _hsv_to_rgb(
    h: NDArray[np.float32], s: NDArray[np.float32], v: NDArray[np.float32]
) -> NDArray[np.float32]:
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.astype(np.int32) % 6
    choices_r = [v, q, p, p, t, v]
    choices_g = [t, v, v, q, p, p]
    choices_b = [p, p, t, v, v, q]
    r = np.choose(i, choices_r)
    g = np.choose(i, choices_g)
    b = np.choose(i, choices_b)
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def palette(prompt: str, rng: np.random.Generator, size: int = 5) -> NDArray[np.float32]:
    """`size` RGB colours in [0, 1], from the prompt's colour words and the seed."""
    words = _words(prompt)
    hues = [HUE_WORDS[w] for w in words if w in HUE_WORDS]
    if not hues:
        digest = hashlib.sha256(" ".join(words).encode()).digest()
        hues = [digest[0] / 256]
    base = np.array(hues, dtype=np.float32)
    picks = base[rng.integers(0, len(base), size)] + rng.normal(0, 0.04, size).astype(np.float32)
    dark = any(w in DARK_WORDS for w in words)
    sat = np.clip(rng.uniform(0.45, 0.95, size), 0, 1).astype(np.float32)
    val = np.sort(rng.uniform(0.15 if dark else 0.35, 0.7 if dark else 1.0, size)).astype(
        np.float32
    )
    return _hsv_to_rgb(np.mod(picks, 1.0).astype(np.float32), sat, val)


def render(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    *,
    index: int = 0,
    stop: threading.Event | None = None,
) -> NDArray[np.uint8]:
    """An RGB picture, `height` by `width` by 3, deterministic for its arguments."""

    def checkpoint() -> None:
        if stop is not None and stop.is_set():
            raise Cancelled()

    rng = np.random.default_rng(_seed_material(prompt, seed, index))
    words = set(_words(prompt))
    turbulence = 2.5 if words & WILD_WORDS else 0.6 if words & CALM_WORDS else 1.4
    colours = palette(prompt, rng)

    scale = max(width, height)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x /= scale
    y /= scale

    # Domain-warped interference of a few plane waves: the field the palette maps.
    warp_x = np.zeros_like(x)
    warp_y = np.zeros_like(y)
    for _ in range(3):
        f, phase = rng.uniform(1.5, 5.0), rng.uniform(0, 2 * np.pi)
        warp_x += np.sin(f * 2 * np.pi * y + phase) * turbulence * 0.05
        warp_y += np.cos(f * 2 * np.pi * x + phase) * turbulence * 0.05
    checkpoint()
    field = np.zeros_like(x)
    for _ in range(4 + len(words) % 4):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(1.0, 6.0) * (0.7 + turbulence * 0.3)
        proj = (x + warp_x) * np.cos(angle) + (y + warp_y) * np.sin(angle)
        field += np.sin(proj * freq * 2 * np.pi + rng.uniform(0, 2 * np.pi))
        checkpoint()
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)

    # Map the field through the palette as a smooth gradient.
    stops = np.linspace(0.0, 1.0, len(colours), dtype=np.float32)
    image = np.stack(
        [np.interp(field, stops, colours[:, channel]) for channel in range(3)], axis=-1
    ).astype(np.float32)
    checkpoint()

    # Soft glowing bodies, more of them for longer prompts.
    for _ in range(2 + min(len(words), 8) // 2):
        cx, cy = rng.uniform(0.1, 0.9) * width / scale, rng.uniform(0.1, 0.9) * height / scale
        radius = rng.uniform(0.05, 0.25)
        glow = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2)))
        colour = colours[rng.integers(0, len(colours))]
        image += glow[..., None] * (colour - image) * rng.uniform(0.3, 0.7)
        checkpoint()

    # Vignette, then quantise.
    cxn, cyn = 0.5 * width / scale, 0.5 * height / scale
    falloff = 1.0 - 0.5 * np.clip(np.hypot(x - cxn, y - cyn) / 0.75, 0, 1) ** 2
    image *= falloff[..., None]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
