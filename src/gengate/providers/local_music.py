"""`local-music`: a short composition from the prompt and seed, as WAV, MP3 or Ogg.

The prompt's mood words pick key, mode and tempo (`music_theory.compose`); the score
(melody, bass, pads, drums) is rendered by `synth.py` at 44.1 kHz stereo. When the
piece is not instrumental, the lyrics (or, without lyrics, the prompt) are spoken
line by line by the `joe` voice of `local-voice`, each line starting on a bar line,
with the melody lowered under the voice. Lines that would not finish before the
fade-out are left out (the first line is always placed, and cut if it must be).

`duration` is clamped to 1 to 120 s and honoured to the sample; the price is per
second of the output.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import Cancelled
from gengate.providers.audio import AUDIO_CONTENT_TYPES, AUDIO_FORMATS, encode_audio, resample_audio
from gengate.providers.base import GenerationContext, GenerationResult, Provider, prompt_schema
from gengate.providers.local_voice import DEFAULT_VOICE, speak_lines, split_sentences
from gengate.providers.music_theory import BEATS_PER_BAR, Score, compose
from gengate.providers.progress import ThreadProgress
from gengate.providers.synth import SAMPLE_RATE, master, mix_stems, render_stems

MIN_DURATION_S: Final = 1.0
MAX_DURATION_S: Final = 120.0
DEFAULT_DURATION_S: Final = 10.0
MAX_LYRICS_CHARS: Final = 2000
VOICE_GAIN: Final = 0.75
MELODY_UNDER_VOICE: Final = 0.35  # the melody's level while a line is sung


def clamp_duration(value: Any) -> float:
    """`duration` as asked, clamped to the model's range (SPEC §2: clamped, not refused)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = DEFAULT_DURATION_S
    if not math.isfinite(seconds):
        seconds = MAX_DURATION_S if seconds > 0 else MIN_DURATION_S
    return min(MAX_DURATION_S, max(MIN_DURATION_S, seconds))


def music_seed(prompt: str, model_input: Mapping[str, Any]) -> int:
    """The input's seed, or one fixed by the prompt."""
    if "seed" in model_input:
        return int(model_input["seed"])
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def lyric_lines(lyrics: str) -> list[str]:
    """The lines to sing: the lyrics' lines, long ones split at sentence ends."""
    lines: list[str] = []
    for line in lyrics.splitlines():
        lines.extend(split_sentences(line))
    return lines


@dataclass(frozen=True, slots=True)
class PlacedLine:
    text: str
    start: int  # sample in the track
    samples: NDArray[np.float32]


def _place_lines(
    lines: list[str],
    score: Score,
    total: int,
    fade_start: int,
    seed: int,
    stop: threading.Event,
    progress: Callable[[float], None],
) -> list[PlacedLine]:
    bar = round(BEATS_PER_BAR * score.seconds_per_beat * SAMPLE_RATE)
    # One bar of introduction when the piece is long enough for it.
    cursor = bar if total >= 4 * bar else 0
    placed: list[PlacedLine] = []
    spoken = speak_lines(lines, voice=DEFAULT_VOICE, stop=stop, seed=seed)
    for index, (line, (speech, rate)) in enumerate(zip(lines, spoken, strict=True)):
        if stop.is_set():
            raise Cancelled()
        progress((index + 1) / len(lines))
        if len(speech) == 0:
            continue
        samples = resample_audio(speech, rate, SAMPLE_RATE)
        if placed and cursor + len(samples) > fade_start:
            break
        placed.append(PlacedLine(line, cursor, samples[: max(0, total - cursor)]))
        # The next line starts on the first bar line after this one ends.
        cursor = math.ceil((cursor + len(samples) + 0.25 * bar) / bar) * bar
        if cursor >= fade_start:
            break
    return placed


def _ducking(placed: list[PlacedLine], total: int) -> NDArray[np.float32]:
    """The melody's gain: lowered while a line sounds, with 80 ms ramps."""
    active = np.zeros(total, dtype=np.float32)
    for line in placed:
        active[line.start : line.start + len(line.samples)] = 1.0
    ramp = round(0.08 * SAMPLE_RATE)
    kernel = np.ones(ramp, dtype=np.float32) / ramp
    smooth = np.convolve(active, kernel, mode="same").astype(np.float32)
    return 1.0 - (1.0 - MELODY_UNDER_VOICE) * np.clip(smooth, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class MusicRendering:
    samples: NDArray[np.float32]  # stereo (n, 2) at SAMPLE_RATE
    score: Score
    lines: list[PlacedLine]  # the lyrics as placed over the track, in order


def render_music(
    prompt: str,
    seed: int,
    duration_s: float,
    *,
    lyrics: str | None,
    stop: threading.Event,
    progress: Callable[[float], None] | None = None,
) -> MusicRendering:
    """The piece as stereo samples at SAMPLE_RATE, exactly `round(duration_s * rate)`
    long, with the score they play. `lyrics` (None: instrumental) are spoken over it."""
    report = progress or (lambda fraction: None)
    total = round(duration_s * SAMPLE_RATE)
    score = compose(prompt, seed, duration_s)
    rng = np.random.default_rng(seed)
    stems = render_stems(
        score,
        rng,
        total=total,
        stop=stop,
        progress=lambda fraction: report(0.05 + 0.45 * fraction),
    )
    fade_out_s = min(2.0, 0.15 * duration_s)
    placed: list[PlacedLine] = []
    if lyrics is not None:
        lines = lyric_lines(lyrics)
        if lines:
            fade_start = total - round(fade_out_s * SAMPLE_RATE)
            placed = _place_lines(
                lines,
                score,
                total,
                fade_start,
                seed,
                stop,
                lambda fraction: report(0.5 + 0.4 * fraction),
            )
            stems["melody"] = stems["melody"] * _ducking(placed, total)
    if stop.is_set():
        raise Cancelled()
    mixed = mix_stems(stems, seconds_per_beat=score.seconds_per_beat, rate=SAMPLE_RATE)
    if placed:
        # Normalise the band first so the voice sits at a fixed level above it.
        band_peak = float(np.max(np.abs(mixed))) or 1.0
        mixed *= 0.6 / band_peak
        for line in placed:
            end = line.start + len(line.samples)
            mixed[line.start : end] += VOICE_GAIN * line.samples[:, None]
    report(0.92)
    return MusicRendering(master(mixed, rate=SAMPLE_RATE, fade_out_s=fade_out_s), score, placed)


def music_encoded(
    prompt: str,
    seed: int,
    duration_s: float,
    lyrics: str | None,
    fmt: str,
    progress: Callable[[float], None],
    *,
    stop: threading.Event,
) -> tuple[bytes, float]:
    """The encoded piece and its duration in seconds (run in a worker thread)."""
    rendering = render_music(prompt, seed, duration_s, lyrics=lyrics, stop=stop, progress=progress)
    samples = rendering.samples
    encoded = encode_audio(samples, SAMPLE_RATE, fmt)
    progress(1.0)
    return encoded, len(samples) / SAMPLE_RATE


class LocalMusicProvider(Provider):
    modality = "music"
    description = (
        "A composition on the CPU (melody, chords, bass, drums) whose mood, key and tempo "
        "follow the prompt; optional spoken lyrics (WAV, MP3 or Ogg)."
    )
    price = Price(PriceUnit.SECOND, Decimal("0.5"))

    def input_schema(self) -> dict[str, Any]:
        return prompt_schema(
            {
                "duration": {
                    "type": "number",
                    "default": DEFAULT_DURATION_S,
                    "description": "Seconds; clamped to 1 to 120.",
                },
                "is_instrumental": {"type": "boolean", "default": True},
                "lyrics": {
                    "type": "string",
                    "maxLength": MAX_LYRICS_CHARS,
                    "description": (
                        "Spoken over the track, line by line, when `is_instrumental` is "
                        "false (the prompt is spoken when this is absent)."
                    ),
                },
                "format": {"type": "string", "enum": list(AUDIO_FORMATS), "default": "wav"},
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return clamp_duration(model_input.get("duration", DEFAULT_DURATION_S))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        fmt = str(data.get("format", "wav"))
        lyrics: str | None = None
        if not data.get("is_instrumental", True):
            lyrics = str(data.get("lyrics") or prompt)
        asked = clamp_duration(data.get("duration", DEFAULT_DURATION_S))
        encoded, duration = await ctx.run_cpu(
            music_encoded,
            prompt,
            music_seed(prompt, data),
            asked,
            lyrics,
            fmt,
            ThreadProgress(ctx),
        )
        await ctx.save_output(encoded, AUDIO_CONTENT_TYPES[fmt], duration_sec=round(duration, 3))
        # Rounding to whole samples may add a fraction of a sample: never charge more
        # than the reservation (the clamped duration asked for).
        return GenerationResult(units=min(duration, asked))

    def limits(self) -> dict[str, Any]:
        return {"min_duration_s": MIN_DURATION_S, "max_duration_s": MAX_DURATION_S}
