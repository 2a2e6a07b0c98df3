"""Procedural pictures shaped by a prompt and a seed (numpy, vectorised).

The prompt picks the palette (colour words and moods bias the hues; every other
word nudges them by its hash) and the composition (how many bodies, how turbulent
the field); the seed picks everything random. Pure: no I/O, deterministic.

`render` draws one still picture. `plan_animation` and `render_animation_frame` draw
the same kind of picture in motion for `local-video`: the wave field drifts and
evolves, and the glowing bodies travel and pulse, as functions of time alone.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass

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


# -- animation (local-video) -------------------------------------------------------------

# Frames are computed at about this many pixels and scaled up by the video encoder's
# scaler: the field and the glows are smooth, so a larger canvas adds cost, not detail.
ANIMATION_WORK_PIXELS = 160_000
LUT_SIZE = 256


@dataclass(frozen=True, slots=True)
class _Wave:
    angle: float
    frequency: float  # cycles per unit of the canvas' long side
    phase: float
    speed: float  # radians per second of phase drift


@dataclass(frozen=True, slots=True)
class _Body:
    centre: tuple[float, float]
    swing: tuple[float, float]  # amplitude of travel in x and y
    rate: tuple[float, float]  # radians per second in x and y (a Lissajous path)
    offset: tuple[float, float]
    radius: float
    pulse_rate: float
    colour: NDArray[np.float32]
    strength: float


@dataclass(frozen=True, slots=True)
class Animation:
    """Everything a frame depends on besides time; built once per video."""

    width: int  # of the frames `render_animation_frame` returns (the work canvas)
    height: int
    xs: NDArray[np.float32]  # canvas coordinates, in units of the long side
    ys: NDArray[np.float32]
    lut: NDArray[np.float32]  # LUT_SIZE RGB colours the field maps through
    warps: tuple[_Wave, ...]
    waves: tuple[_Wave, ...]
    turbulence: float
    drift: tuple[float, float]  # units per second the field slides
    bodies: tuple[_Body, ...]
    vignette: NDArray[np.float32]
    field_low: float
    field_span: float


def animation_canvas(width: int, height: int) -> tuple[int, int]:
    """The work canvas for a video of `width` by `height`: the same aspect, about
    ANIMATION_WORK_PIXELS pixels, never larger than the video."""
    scale = min(1.0, float(np.sqrt(ANIMATION_WORK_PIXELS / (width * height))))
    return max(16, round(width * scale)), max(16, round(height * scale))


def _separable_field(
    xs: NDArray[np.float32],
    ys: NDArray[np.float32],
    warps: tuple[_Wave, ...],
    waves: tuple[_Wave, ...],
    turbulence: float,
    t: float,
) -> NDArray[np.float32]:
    """The warped interference field at time `t`.

    Each warp bends x by a function of y and y by a function of x, so a plane wave's
    argument (x + wx(y))·cos a + (y + wy(x))·sin a splits into X(x) + Y(y), and
    sin(X + Y) = sin X cos Y + cos X sin Y: two outer products per wave instead of
    a transcendental function per pixel.
    """
    warp_of_y = np.zeros_like(ys)
    warp_of_x = np.zeros_like(xs)
    for warp in warps:
        moving = warp.phase + warp.speed * t
        warp_of_y += np.sin(warp.frequency * 2 * np.pi * ys + moving) * turbulence * 0.05
        warp_of_x += np.cos(warp.frequency * 2 * np.pi * xs + moving) * turbulence * 0.05
    # Σ sin(Y)·cos(X) + cos(Y)·sin(X) over the waves is one matrix product. It goes
    # through einsum's own loop, not BLAS: BLAS threads would fight the worker
    # threads for the cores, and a fixed summation order keeps frames repeatable.
    rows = np.empty((len(ys), 2 * len(waves)), dtype=np.float32)
    columns = np.empty((2 * len(waves), len(xs)), dtype=np.float32)
    for index, wave in enumerate(waves):
        cos_a, sin_a = np.cos(wave.angle), np.sin(wave.angle)
        k = wave.frequency * 2 * np.pi
        along_x = k * (xs * cos_a + warp_of_x * sin_a) + wave.phase + wave.speed * t
        along_y = k * (ys * sin_a + warp_of_y * cos_a)
        rows[:, 2 * index] = np.sin(along_y)
        rows[:, 2 * index + 1] = np.cos(along_y)
        columns[2 * index] = np.cos(along_x)
        columns[2 * index + 1] = np.sin(along_x)
    field: NDArray[np.float32] = np.einsum("ik,kj->ij", rows, columns)
    return field


def plan_animation(prompt: str, seed: int, width: int, height: int) -> Animation:
    """The animation for a video of `width` by `height`, fixed by prompt and seed."""
    rng = np.random.default_rng(_seed_material(prompt, seed, 0x51DE0))
    words = set(_words(prompt))
    turbulence = 2.5 if words & WILD_WORDS else 0.6 if words & CALM_WORDS else 1.4
    tempo = 1.8 if words & WILD_WORDS else 0.5 if words & CALM_WORDS else 1.0
    colours = palette(prompt, rng)
    stops = np.linspace(0.0, 1.0, len(colours), dtype=np.float32)
    levels = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32)
    lut = np.stack(
        [np.interp(levels, stops, colours[:, channel]) for channel in range(3)], axis=-1
    ).astype(np.float32)

    canvas_w, canvas_h = animation_canvas(width, height)
    unit = max(canvas_w, canvas_h)
    xs = ((np.arange(canvas_w) + 0.5) / unit).astype(np.float32)
    ys = ((np.arange(canvas_h) + 0.5) / unit).astype(np.float32)

    def wave(low: float, high: float) -> _Wave:
        return _Wave(
            angle=float(rng.uniform(0, np.pi)),
            frequency=float(rng.uniform(low, high)),
            phase=float(rng.uniform(0, 2 * np.pi)),
            speed=float(rng.uniform(0.2, 0.9) * tempo * rng.choice([-1, 1])),
        )

    warps = tuple(wave(1.5, 5.0) for _ in range(3))
    waves = tuple(
        wave(1.0 * (0.7 + turbulence * 0.3), 6.0 * (0.7 + turbulence * 0.3))
        for _ in range(4 + len(words) % 4)
    )
    drift_angle = rng.uniform(0, 2 * np.pi)
    drift_speed = 0.015 * tempo
    drift = (float(np.cos(drift_angle) * drift_speed), float(np.sin(drift_angle) * drift_speed))
    bodies = tuple(
        _Body(
            centre=(
                float(rng.uniform(0.2, 0.8) * canvas_w / unit),
                float(rng.uniform(0.2, 0.8) * canvas_h / unit),
            ),
            swing=(float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.03, 0.2))),
            rate=(float(rng.uniform(0.2, 0.7) * tempo), float(rng.uniform(0.2, 0.7) * tempo)),
            offset=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
            radius=float(rng.uniform(0.025, 0.07)),
            pulse_rate=float(rng.uniform(0.5, 1.5) * tempo),
            # Lighter than the palette colour it comes from, so it glows.
            colour=colours[int(rng.integers(0, len(colours)))] * 0.35 + 0.65,
            strength=float(rng.uniform(0.55, 0.9)),
        )
        for _ in range(2 + min(len(words), 8) // 3)
    )
    centre_x, centre_y = 0.5 * canvas_w / unit, 0.5 * canvas_h / unit
    distance = np.hypot(xs[None, :] - centre_x, ys[:, None] - centre_y)
    vignette = (1.0 - 0.5 * np.clip(distance / 0.75, 0, 1) ** 2).astype(np.float32)
    # The field's range is fixed from the first frame, so brightness does not pump.
    first = _separable_field(xs, ys, warps, waves, turbulence, 0.0)
    low, span = float(first.min()), max(float(np.ptp(first)), 1e-6)
    return Animation(
        canvas_w,
        canvas_h,
        xs,
        ys,
        lut,
        warps,
        waves,
        turbulence,
        drift,
        bodies,
        vignette,
        low,
        span,
    )


def render_animation_frame(animation: Animation, t: float) -> NDArray[np.uint8]:
    """The RGB frame at `t` seconds, on the animation's work canvas."""
    a = animation
    xs = a.xs + np.float32(a.drift[0] * t)
    ys = a.ys + np.float32(a.drift[1] * t)
    field = _separable_field(xs, ys, a.warps, a.waves, a.turbulence, t)
    level = (field - a.field_low) * ((LUT_SIZE - 1) / a.field_span)
    index = np.clip(level, 0, LUT_SIZE - 1).astype(np.uint8)
    # Channels first: every operation below runs along whole rows.
    image = np.stack([np.take(a.lut[:, channel], index) for channel in range(3)])
    for body in a.bodies:
        cx = body.centre[0] + body.swing[0] * np.sin(body.rate[0] * t + body.offset[0])
        cy = body.centre[1] + body.swing[1] * np.sin(body.rate[1] * t + body.offset[1])
        radius = body.radius * (1.0 + 0.2 * np.sin(body.pulse_rate * t))
        # A separable Gaussian, drawn only where it is visible (within 3 radii).
        columns = np.flatnonzero(np.abs(a.xs - cx) < 3 * radius)
        rows = np.flatnonzero(np.abs(a.ys - cy) < 3 * radius)
        if not len(columns) or not len(rows):
            continue
        x0, x1, y0, y1 = columns[0], columns[-1] + 1, rows[0], rows[-1] + 1
        glow_x = np.exp(-((a.xs[x0:x1] - cx) ** 2) / (2 * radius**2)).astype(np.float32)
        glow_y = np.exp(-((a.ys[y0:y1] - cy) ** 2) / (2 * radius**2)).astype(np.float32)
        glow = np.outer(glow_y * np.float32(body.strength), glow_x)
        keep = 1.0 - glow
        for channel in range(3):
            patch = image[channel, y0:y1, x0:x1]
            patch *= keep
            patch += glow * body.colour[channel]
    image *= a.vignette
    np.clip(image, 0.0, 1.0, out=image)
    image *= 255.0
    image += 0.5
    return np.ascontiguousarray(image.astype(np.uint8).transpose(1, 2, 0))
