"""Sound for `local-music` (and the video soundtrack): a score rendered with numpy.

Tonal instruments are additive: each note reads a band-limited single-cycle
wavetable (a few harmonics with fixed weights, the fundamental always the loudest)
with linear interpolation, shaped by an ADSR or plucked envelope, with delayed
vibrato on the lead. Drums are synthesised once per render (a pitch-swept sine
kick, a tone-plus-noise snare, a high-passed noise hat) and placed at each hit.
Stems are mixed to stereo with constant-power panning and two echoes on the melody,
then peak-normalised and faded at both ends.

Pure and deterministic: noise comes from a generator seeded by the caller, and every
operation is plain numpy arithmetic in a fixed order. `stop` is checked between
groups of notes, raising `Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from gengate.providers.art import Cancelled
from gengate.providers.music_theory import DrumHit, Note, Score

SAMPLE_RATE: Final = 44_100
TABLE_SIZE: Final = 4096
NOTES_PER_CHECK: Final = 32
MASTER_PEAK: Final = 0.89

Samples = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Instrument:
    harmonics: tuple[float, ...]  # weights of harmonics 1, 2, 3, …
    attack_s: float
    decay_s: float
    sustain: float  # level held after the decay, 0..1
    release_s: float
    pluck_s: float = 0.0  # > 0: the level also decays exponentially with this time
    vibrato: float = 0.0  # peak frequency deviation, as a ratio
    detune_cents: tuple[float, ...] = (0.0,)  # one voice per entry, summed
    partial_ratios: tuple[float, ...] = ()  # inharmonic partials (bells), else harmonics


INSTRUMENTS: Final[dict[str, Instrument]] = {
    "lead": Instrument((1.0, 0.42, 0.3, 0.16, 0.1, 0.06), 0.012, 0.12, 0.75, 0.08, vibrato=0.004),
    "pluck": Instrument((1.0, 0.5, 0.33, 0.2, 0.12), 0.004, 0.08, 0.5, 0.06, pluck_s=0.35),
    "keys": Instrument((1.0, 0.38, 0.18, 0.1), 0.006, 0.2, 0.55, 0.12, pluck_s=0.9),
    "bell": Instrument(
        (1.0, 0.35, 0.18), 0.003, 0.1, 0.6, 0.3, pluck_s=0.8, partial_ratios=(1.0, 2.76, 5.4)
    ),
    "bass": Instrument((1.0, 0.5, 0.22, 0.1), 0.006, 0.15, 0.7, 0.05, pluck_s=1.2),
    "pad": Instrument(
        tuple(1.0 / k for k in range(1, 9)), 0.35, 0.5, 0.8, 0.45, detune_cents=(-7.0, 0.0, 7.0)
    ),
}

# (gain, pan in [-1, 1]) of each stem in the mix.
STEM_MIX: Final[dict[str, tuple[float, float]]] = {
    "melody": (0.5, 0.15),
    "pads": (0.2, -0.25),
    "bass": (0.42, 0.0),
    "drums": (0.45, 0.0),
}


def midi_to_hz(pitch: float) -> float:
    return float(440.0 * 2.0 ** ((pitch - 69) / 12))


def _wavetable(harmonics: tuple[float, ...]) -> Samples:
    phase = np.arange(TABLE_SIZE + 1, dtype=np.float64) / TABLE_SIZE
    table = np.zeros(TABLE_SIZE + 1, dtype=np.float64)
    for k, weight in enumerate(harmonics, start=1):
        table += weight * np.sin(2 * np.pi * k * phase)
    peak = float(np.max(np.abs(table)))
    return (table / peak).astype(np.float32)


def _envelope(instrument: Instrument, length: int, held: int, rate: int) -> Samples:
    """The level over `length` samples of a note held for `held` samples."""
    t = (np.arange(length) / rate).astype(np.float32)
    attack = max(instrument.attack_s, 1e-4)
    level = np.minimum(t / attack, 1.0)
    after_attack = np.maximum(t - attack, 0.0)
    decay = instrument.sustain + (1 - instrument.sustain) * np.exp(
        -after_attack / max(instrument.decay_s, 1e-4)
    )
    level = np.where(t < attack, level, decay)
    if instrument.pluck_s > 0:
        level = level * np.exp(-t / instrument.pluck_s)
    held_s = held / rate
    release = np.clip(1.0 - (t - held_s) / max(instrument.release_s, 1e-4), 0.0, 1.0)
    shaped: Samples = (level * release).astype(np.float32)
    return shaped


def _phase(frequency: float, t: Samples, instrument: Instrument) -> NDArray[np.float64]:
    """Cycles elapsed at each time, with vibrato fading in after 0.15 s."""
    phase = frequency * t.astype(np.float64)
    if instrument.vibrato > 0:
        rate_hz = 5.5
        depth = np.clip((t - 0.15) / 0.25, 0.0, 1.0).astype(np.float64) * instrument.vibrato
        phase += depth * frequency / (2 * np.pi * rate_hz) * np.sin(2 * np.pi * rate_hz * t)
    return phase


def _read_table(table: Samples, phase: NDArray[np.float64]) -> Samples:
    position = (phase % 1.0) * TABLE_SIZE
    index = position.astype(np.int64)
    fraction = (position - index).astype(np.float32)
    low = table[index]
    return low + (table[index + 1] - low) * fraction


def _note_wave(
    instrument: Instrument, table: Samples, frequency: float, length: int, rate: int
) -> Samples:
    t = (np.arange(length) / rate).astype(np.float32)
    wave = np.zeros(length, dtype=np.float32)
    if instrument.partial_ratios:
        for ratio, weight in zip(instrument.partial_ratios, instrument.harmonics, strict=False):
            # Higher partials of a struck bar die away sooner.
            fade = np.exp(-t * ratio * 1.5).astype(np.float32)
            wave += weight * fade * np.sin(2 * np.pi * frequency * ratio * t).astype(np.float32)
        return (wave / sum(instrument.harmonics)).astype(np.float32)
    for cents in instrument.detune_cents:
        detuned = frequency * 2.0 ** (cents / 1200)
        wave += _read_table(table, _phase(detuned, t, instrument))
    return (wave / len(instrument.detune_cents)).astype(np.float32)


def _onset_beats(start: float, swing: float) -> float:
    """Swing delays the off-beat eighths."""
    if swing and abs((start * 2) % 2 - 1) < 1e-6:
        return start + swing
    return start


def render_notes(
    notes: Iterable[Note],
    instrument_name: str,
    *,
    total: int,
    seconds_per_beat: float,
    swing: float = 0.0,
    rate: int = SAMPLE_RATE,
    stop: threading.Event | None = None,
) -> Samples:
    """One mono stem of `total` samples: the notes played by one instrument."""
    instrument = INSTRUMENTS[instrument_name]
    table = _wavetable(instrument.harmonics)
    out = np.zeros(total, dtype=np.float32)
    for count, note in enumerate(notes):
        if stop is not None and count % NOTES_PER_CHECK == 0 and stop.is_set():
            raise Cancelled()
        begin = round(_onset_beats(note.start, swing) * seconds_per_beat * rate)
        if begin >= total:
            continue
        held = max(1, round(note.length * seconds_per_beat * rate))
        length = min(held + round(instrument.release_s * rate), total - begin)
        frequency = midi_to_hz(note.pitch)
        wave = _note_wave(instrument, table, frequency, length, rate)
        out[begin : begin + length] += (
            note.velocity * wave * _envelope(instrument, length, held, rate)
        )
    return out


def _filtered_noise(
    rng: np.random.Generator, length: int, low_hz: float, high_hz: float
) -> Samples:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    noise = np.fft.irfft(spectrum, length)
    peak = float(np.max(np.abs(noise)))
    return (noise / peak).astype(np.float32)


def drum_sounds(rng: np.random.Generator, rate: int = SAMPLE_RATE) -> dict[str, Samples]:
    """One sample per drum, fixed by `rng`."""
    t = np.arange(round(0.5 * rate), dtype=np.float32) / rate
    sweep = 45.0 + 80.0 * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(sweep) / rate) * np.exp(-t / 0.2)
    kick[: round(0.004 * rate)] += 0.3  # the beater's click
    short = t[: round(0.3 * rate)]
    snare_noise = _filtered_noise(rng, len(short), 900, 9000)
    snare = 0.7 * snare_noise * np.exp(-short / 0.09) + 0.5 * np.sin(
        2 * np.pi * 185 * short
    ) * np.exp(-short / 0.05)
    tick = t[: round(0.12 * rate)]
    hat = _filtered_noise(rng, len(tick), 6000, 16000) * np.exp(-tick / 0.03)
    return {
        "kick": kick.astype(np.float32),
        "snare": snare.astype(np.float32),
        "hat": (0.45 * hat).astype(np.float32),
    }


def render_drums(
    hits: Iterable[DrumHit],
    sounds: dict[str, Samples],
    *,
    total: int,
    seconds_per_beat: float,
    swing: float = 0.0,
    rate: int = SAMPLE_RATE,
    stop: threading.Event | None = None,
) -> Samples:
    out = np.zeros(total, dtype=np.float32)
    for count, hit in enumerate(hits):
        if stop is not None and count % (4 * NOTES_PER_CHECK) == 0 and stop.is_set():
            raise Cancelled()
        begin = round(_onset_beats(hit.start, swing) * seconds_per_beat * rate)
        if begin >= total:
            continue
        sound = sounds[hit.kind]
        length = min(len(sound), total - begin)
        out[begin : begin + length] += hit.velocity * sound[:length]
    return out


def render_stems(
    score: Score,
    rng: np.random.Generator,
    *,
    total: int,
    rate: int = SAMPLE_RATE,
    stop: threading.Event | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Samples]:
    """The score's stems (`melody`, `pads`, `bass`, `drums`), each mono, `total` long."""
    spb = score.seconds_per_beat
    stems: dict[str, Samples] = {}
    parts: list[tuple[str, list[Note], str]] = [
        ("melody", score.melody, score.lead),
        ("pads", score.pads, "pad"),
        ("bass", score.bass, "bass"),
    ]
    for index, (name, notes, instrument) in enumerate(parts):
        stems[name] = render_notes(
            notes,
            instrument,
            total=total,
            seconds_per_beat=spb,
            swing=score.swing,
            rate=rate,
            stop=stop,
        )
        if progress is not None:
            progress((index + 1) / (len(parts) + 1))
    stems["drums"] = render_drums(
        score.drums,
        drum_sounds(rng, rate),
        total=total,
        seconds_per_beat=spb,
        swing=score.swing,
        rate=rate,
        stop=stop,
    )
    if progress is not None:
        progress(1.0)
    return stems


def _echo(signal: Samples, delay: int, gain: float) -> Samples:
    out = np.zeros_like(signal)
    if 0 < delay < len(signal):
        out[delay:] = gain * signal[:-delay]
    return out


def mix_stems(stems: dict[str, Samples], *, seconds_per_beat: float, rate: int) -> Samples:
    """Stereo (n, 2) mix of the stems with the gains and pans of STEM_MIX."""
    total = len(next(iter(stems.values())))
    out = np.zeros((total, 2), dtype=np.float32)
    for name, signal in stems.items():
        gain, pan = STEM_MIX.get(name, (0.5, 0.0))
        angle = (pan + 1) * np.pi / 4  # constant power: cos² + sin² = 1
        out[:, 0] += gain * np.cos(angle) * signal
        out[:, 1] += gain * np.sin(angle) * signal
    if "melody" in stems:
        # Two echoes, a dotted eighth and a quarter later, on opposite sides.
        melody = stems["melody"] * STEM_MIX["melody"][0]
        out[:, 0] += _echo(melody, round(0.75 * seconds_per_beat * rate), 0.22)
        out[:, 1] += _echo(melody, round(1.0 * seconds_per_beat * rate), 0.16)
    return out


def master(mix: Samples, *, rate: int, fade_out_s: float) -> Samples:
    """Peak-normalised, with a 10 ms fade-in and a `fade_out_s` fade-out (no clicks)."""
    out = mix.astype(np.float32, copy=True)
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 1e-9:
        out *= MASTER_PEAK / peak
    total = len(out)
    fade_in = min(total, round(0.01 * rate))
    out[:fade_in] *= np.linspace(0.0, 1.0, fade_in, dtype=np.float32)[:, None]
    fade_out = min(total, max(1, round(fade_out_s * rate)))
    out[total - fade_out :] *= np.linspace(1.0, 0.0, fade_out, dtype=np.float32)[:, None]
    return out
