"""Composition for `local-music`: from a prompt and a seed to a score of notes.

The prompt's mood words pick the mood (mode, tempo range, progressions, bass and
drum style); the seed and the prompt pick the key, the tempo within the range, the
progression and every note. A score is plain data: notes in beats (4/4 time), MIDI
pitches, velocities in [0, 1]; `synth.py` turns it into sound.

The melody is built the way short songs are: a two-bar motif (a rhythm and a contour
in scale steps) that returns, moved onto the current chord, in phrases of eight bars
(A A' B A''), with chord tones on strong beats, mostly stepwise motion between them,
and each phrase closing on a chord tone held long.

Pure: no I/O, no clock; deterministic for its arguments.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Final

import numpy as np

BEATS_PER_BAR: Final = 4
PHRASE_BARS: Final = 8

MODES: Final[dict[str, tuple[int, ...]]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}
NOTE_NAMES: Final = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Drum patterns on a grid of sixteen sixteenths: step indexes per instrument.
DrumPattern = dict[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Mood:
    name: str
    modes: tuple[str, ...]
    tempo: tuple[int, int]  # beats per minute, inclusive range
    progressions: tuple[tuple[int, ...], ...]  # chord roots as scale degrees (0-based)
    bass_style: str  # "whole", "pulse", "octaves", "walking"
    drums: DrumPattern
    swing: float = 0.0  # delay of off-beat eighths, in beats
    lead: str = "lead"  # the melody's instrument in synth.py
    density: float = 0.5  # 0 sparse … 1 busy melody rhythms


MOODS: Final[dict[str, Mood]] = {
    "bright": Mood(
        "bright",
        ("major", "mixolydian"),
        (108, 128),
        ((0, 4, 5, 3), (0, 5, 3, 4), (3, 4, 0, 0), (0, 3, 0, 4)),
        "pulse",
        {"kick": (0, 8), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
        lead="pluck",
        density=0.7,
    ),
    "melancholy": Mood(
        "melancholy",
        ("minor",),
        (66, 84),
        ((0, 5, 2, 6), (0, 3, 5, 4), (5, 3, 0, 4), (0, 6, 5, 6)),
        "whole",
        {"kick": (0, 10), "snare": (8,), "hat": (0, 4, 8, 12)},
        lead="lead",
        density=0.6,
    ),
    "calm": Mood(
        "calm",
        ("lydian", "major"),
        (60, 76),
        ((0, 1, 0, 4), (0, 3, 5, 4), (0, 5, 3, 0)),
        "whole",
        {"kick": (0,), "hat": (4, 12)},
        lead="bell",
        # Slow bars: a music box's running notes, or ten seconds hold only a few.
        density=0.8,
    ),
    "epic": Mood(
        "epic",
        ("harmonic_minor", "minor"),
        (120, 140),
        ((0, 5, 3, 4), (0, 6, 5, 4), (0, 3, 5, 4)),
        "octaves",
        {
            "kick": (0, 3, 6, 8, 11, 14),
            "snare": (4, 12),
            "hat": (0, 2, 4, 6, 8, 10, 12, 14),
        },
        lead="lead",
        density=0.8,
    ),
    "chill": Mood(
        "chill",
        ("dorian", "minor"),
        (78, 94),
        ((1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4)),
        "walking",
        {"kick": (0, 7, 10), "snare": (4, 12), "hat": (0, 2, 4, 6, 8, 10, 12, 14)},
        swing=1 / 6,
        lead="keys",
        density=0.7,
    ),
    "mysterious": Mood(
        "mysterious",
        ("phrygian", "harmonic_minor"),
        (72, 92),
        ((0, 1, 0, 6), (0, 5, 1, 0), (0, 3, 1, 0)),
        "pulse",
        {"kick": (0, 6, 8), "snare": (12,), "hat": (2, 6, 10, 14)},
        lead="bell",
        density=0.65,
    ),
}
# Words that set a mood, by mood.
MOOD_VOCABULARY: Final[dict[str, str]] = {
    "bright": (
        "happy joy joyful bright sunny upbeat summer dance party fun cheerful pop "
        "uplifting morning sunshine celebration playful"
    ),
    "melancholy": (
        "sad melancholy melancholic lonely rain rainy tears grief sorrow blue nostalgic "
        "nostalgia longing autumn farewell"
    ),
    "calm": (
        "calm peaceful ambient serene sleep meditation soft gentle lullaby dream dreamy "
        "quiet relaxing still ocean"
    ),
    "epic": (
        "epic battle heroic storm war adventure cinematic intense action victory "
        "triumph dramatic powerful"
    ),
    "chill": (
        "jazz jazzy lounge cafe coffee smooth chill lofi groove groovy funk funky night city"
    ),
    "mysterious": (
        "mysterious mystery spooky eerie horror suspense dark haunted ghost shadow "
        "secret ancient desert"
    ),
}
MOOD_WORDS: Final[dict[str, str]] = {
    word: mood for mood, words in MOOD_VOCABULARY.items() for word in words.split()
}

# Rhythm cells for one bar: (onset, length) in beats; a melody bar uses one.
RHYTHM_CELLS: Final[tuple[tuple[tuple[float, float], ...], ...]] = (
    ((0, 1), (1, 1), (2, 1), (3, 1)),
    ((0, 1.5), (1.5, 0.5), (2, 2)),
    ((0, 0.5), (0.5, 0.5), (1, 1), (2, 1.5), (3.5, 0.5)),
    ((0, 2), (2, 1), (3, 1)),
    ((0, 1), (1, 0.5), (1.5, 0.5), (2, 2)),
    ((0, 0.5), (0.5, 0.5), (1, 0.5), (1.5, 0.5), (2, 1), (3, 1)),
    ((0, 1), (1.5, 0.5), (2, 1), (3, 0.5), (3.5, 0.5)),
    ((0, 3), (3, 1)),
    ((0, 0.75), (0.75, 0.75), (1.5, 0.5), (2, 1), (3, 1)),
)
CADENCE_CELLS: Final = (((0, 1), (1, 3)), ((0, 4),), ((0, 0.5), (0.5, 0.5), (1, 3)))

MELODY_CENTRE: Final = 72  # around C5
# The degree each bar of an eight-bar phrase leans towards: up to a peak in the
# third pair of bars, home at the end.
PHRASE_ARC: Final = (2, 4, 3, 5, 7, 6, 4, 0)
# Steps between the chord tones on strong beats, in scale degrees: mostly seconds.
STEP_SIZES: Final = (1, 2, 3)
STEP_WEIGHTS: Final = (0.6, 0.28, 0.12)
MELODY_SPAN_DEGREES: Final = (-3, 10)  # scale steps around the tonic the melody may use


@dataclass(frozen=True, slots=True)
class Note:
    start: float  # beats from the start
    length: float  # beats
    pitch: int  # MIDI note number
    velocity: float  # 0..1


@dataclass(frozen=True, slots=True)
class DrumHit:
    start: float
    kind: str  # "kick", "snare", "hat"
    velocity: float


@dataclass
class Score:
    """Everything `synth.py` needs to render a piece."""

    mood: str
    key_root: int  # pitch class 0..11
    mode: str
    tempo: float  # beats per minute
    bars: int
    duration_s: float
    chords: list[tuple[int, ...]] = field(default_factory=list)  # MIDI pitches per bar
    melody: list[Note] = field(default_factory=list)
    bass: list[Note] = field(default_factory=list)
    pads: list[Note] = field(default_factory=list)
    drums: list[DrumHit] = field(default_factory=list)
    swing: float = 0.0
    lead: str = "lead"

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.key_root]} {self.mode.replace('_', ' ')}"


def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+", prompt.lower())


def pick_mood(prompt: str) -> Mood:
    """The mood whose words the prompt uses most (ties: the first used); a prompt with
    none gets a mood fixed by its words' hash."""
    counts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for position, word in enumerate(_words(prompt)):
        mood = MOOD_WORDS.get(word)
        if mood is not None:
            counts[mood] = counts.get(mood, 0) + 1
            first_seen.setdefault(mood, position)
    if counts:
        best = max(counts, key=lambda name: (counts[name], -first_seen[name]))
        return MOODS[best]
    digest = hashlib.sha256(" ".join(_words(prompt)).encode()).digest()
    names = sorted(MOODS)
    return MOODS[names[digest[0] % len(names)]]


def _rng(prompt: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"music\x00{prompt}\x00{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


class _Key:
    """A tonic and mode: scale degrees (any integer, octaves wrap) to MIDI pitches."""

    def __init__(self, root: int, mode: str) -> None:
        self.root = root
        self.steps = MODES[mode]

    def pitch(self, degree: int, centre: int) -> int:
        """The MIDI pitch of scale `degree`, counted from the tonic nearest `centre`."""
        octave, index = divmod(degree, len(self.steps))
        tonic = centre - ((centre - self.root) % 12)
        return tonic + 12 * octave + self.steps[index]

    def chord_degrees(self, root_degree: int) -> tuple[int, int, int]:
        return (root_degree, root_degree + 2, root_degree + 4)


def _melody_bar(
    rng: np.random.Generator,
    cell: tuple[tuple[float, float], ...],
    chord: tuple[int, int, int],
    previous: int,
    *,
    contour: list[int] | None,
    cadence: bool,
    arc: int,
) -> list[tuple[float, float, int]]:
    """(onset, length, scale degree) for one bar. With `contour`, the motif's steps
    are replayed from the bar's first note (a motif returning on another chord);
    `arc` is the degree the phrase leans towards in this bar."""
    low, high = MELODY_SPAN_DEGREES
    chord_classes = {d % 7 for d in chord}
    notes: list[tuple[float, float, int]] = []
    degree = previous
    direction = 1 if rng.random() < 0.5 else -1
    for index, (onset, length) in enumerate(cell):
        strong = onset in (0.0, 2.0) or (cadence and index == len(cell) - 1)
        if contour is not None and index < len(contour) and index > 0:
            degree = degree + contour[index]
        elif strong:
            # A chord tone a small leap away, drawn towards the phrase's arc; the
            # same note again is the last resort.
            candidates = [d for d in range(low, high + 1) if d % 7 in chord_classes]
            costs = [
                abs(abs(d - degree) - 2)
                + (3.0 if d == degree else 0.0)
                + 0.9 * abs(d - arc)
                + rng.uniform(0, 1.5)
                for d in candidates
            ]
            degree = candidates[int(np.argmin(costs))]
        else:
            # Runs keep their direction more often than not (scales, not trills).
            size = int(rng.choice(STEP_SIZES, p=STEP_WEIGHTS))
            if rng.random() > 0.65:
                direction = -direction
            degree += direction * size
            direction = 1 if degree <= (low + high) // 2 - 3 else direction
            direction = -1 if degree >= high - 1 else direction
        if notes:
            direction = 1 if degree >= notes[-1][2] else -1
        if degree > high:
            degree -= 7 if degree - 7 >= low else (degree - high)
        if degree < low:
            degree += 7 if degree + 7 <= high else (low - degree)
        notes.append((onset, length, degree))
    return notes


def _bar_cells(
    rng: np.random.Generator, mood: Mood
) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    # Busier moods favour the cells with more notes.
    weights = np.array([len(cell) ** (4 * mood.density) for cell in RHYTHM_CELLS], dtype=float)
    weights /= weights.sum()
    first, second = rng.choice(len(RHYTHM_CELLS), size=2, p=weights)
    return RHYTHM_CELLS[int(first)], RHYTHM_CELLS[int(second)]


def _phrase_position(bar: int, bars: int) -> int:
    """Where a bar stands in its eight-bar phrase. A piece shorter than a phrase is
    one phrase squeezed: its bars spread over the phrase's arc, its last bar the
    cadence."""
    if bars >= PHRASE_BARS:
        return bar % PHRASE_BARS
    if bars == 1:
        return PHRASE_BARS - 1
    return round(bar * (PHRASE_BARS - 1) / (bars - 1))


def _compose_melody(
    rng: np.random.Generator, mood: Mood, key: _Key, chord_roots: list[int], bars: int
) -> list[Note]:
    motif_cells = _bar_cells(rng, mood)
    bridge_cells = _bar_cells(rng, mood)
    motif_steps: list[list[int]] = []
    melody: list[Note] = []
    previous = 4 if rng.random() < 0.5 else 2
    for bar in range(bars):
        position = _phrase_position(bar, bars)
        section = position // 2  # A, A', B, A''
        cadence = position in (3, 7)
        chord = key.chord_degrees(chord_roots[bar])
        cell: tuple[tuple[float, float], ...]
        if cadence:
            cell = CADENCE_CELLS[int(rng.integers(len(CADENCE_CELLS)))]
        elif section == 2:
            cell = bridge_cells[position % 2]
        else:
            cell = motif_cells[position % 2]
        # Short pieces are one phrase that develops; longer ones bring the motif back.
        returns = bars >= PHRASE_BARS and section in (1, 3) and not cadence
        replay = motif_steps[position % 2] if returns else None
        if replay is not None and len(replay) < len(cell):
            replay = None
        notes = _melody_bar(
            rng, cell, chord, previous, contour=replay, cadence=cadence, arc=PHRASE_ARC[position]
        )
        if section == 0 and not cadence and len(motif_steps) < 2:
            degrees = [degree for _, _, degree in notes]
            motif_steps.append([0] + [b - a for a, b in itertools.pairwise(degrees)])
        for onset, length, degree in notes:
            # Notes slightly shorter than their slot: articulation between them.
            velocity = (0.85 if onset in (0.0, 2.0) else 0.7) + rng.uniform(-0.05, 0.05)
            melody.append(
                Note(
                    bar * BEATS_PER_BAR + onset,
                    length * 0.92,
                    key.pitch(degree, MELODY_CENTRE),
                    velocity,
                )
            )
        previous = notes[-1][2]
    return melody


def _compose_bass(mood: Mood, key: _Key, chord_roots: list[int], bars: int) -> list[Note]:
    bass: list[Note] = []
    for bar in range(bars):
        root_degree = chord_roots[bar]
        root = key.pitch(root_degree, 40)
        fifth = key.pitch(root_degree + 4, 40)
        third = key.pitch(root_degree + 2, 40)
        start = bar * BEATS_PER_BAR
        next_root = key.pitch(chord_roots[(bar + 1) % len(chord_roots)], 40)
        if mood.bass_style == "whole":
            bass.append(Note(start, 3.8, root, 0.8))
        elif mood.bass_style == "pulse":
            for beat, pitch in enumerate((root, root, fifth, root)):
                bass.append(Note(start + beat, 0.85, pitch, 0.8 if beat % 2 == 0 else 0.65))
        elif mood.bass_style == "octaves":
            for eighth in range(8):
                pitch = root + (12 if eighth % 2 else 0)
                bass.append(Note(start + eighth / 2, 0.42, pitch, 0.75 if eighth % 2 else 0.85))
        else:  # walking: root, third, fifth, then a step into the next bar's root
            approach = next_root - 1 if next_root > fifth else next_root + 1
            for beat, pitch in enumerate((root, third, fifth, approach)):
                bass.append(Note(start + beat, 0.9, pitch, 0.8 if beat == 0 else 0.68))
    return bass


def _compose_drums(rng: np.random.Generator, mood: Mood, bars: int) -> list[DrumHit]:
    hits: list[DrumHit] = []
    for bar in range(bars):
        fill = bar % 4 == 3 and bars > 1
        for kind, steps in mood.drums.items():
            chosen = list(steps)
            if fill and kind == "snare":
                chosen = sorted({*chosen, 13, 14, 15})
            for step in chosen:
                accent = 1.0 if step % 8 == 0 else 0.8 if step % 4 == 0 else 0.6
                velocity = accent * (0.9 + rng.uniform(-0.08, 0.08))
                hits.append(DrumHit(bar * BEATS_PER_BAR + step / 4, kind, velocity))
    return hits


def compose(prompt: str, seed: int, duration_s: float) -> Score:
    """A piece at least `duration_s` long (whole bars; the renderer cuts and fades it)."""
    mood = pick_mood(prompt)
    rng = _rng(prompt, seed)
    mode = mood.modes[int(rng.integers(len(mood.modes)))]
    key_root = int(rng.integers(12))
    low, high = mood.tempo
    tempo = float(rng.integers(low, high + 1))
    bar_s = BEATS_PER_BAR * 60.0 / tempo
    bars = max(1, math.ceil(duration_s / bar_s))
    progression = mood.progressions[int(rng.integers(len(mood.progressions)))]
    chord_roots = [progression[bar % len(progression)] for bar in range(bars)]
    # Phrases end at home: the last bar of each eight, and of the piece, is the tonic.
    for bar in range(bars):
        if bar % PHRASE_BARS == PHRASE_BARS - 1 or bar == bars - 1:
            chord_roots[bar] = 0
    key = _Key(key_root, mode)
    score = Score(
        mood=mood.name,
        key_root=key_root,
        mode=mode,
        tempo=tempo,
        bars=bars,
        duration_s=duration_s,
        swing=mood.swing,
        lead=mood.lead,
    )
    for bar, root_degree in enumerate(chord_roots):
        pitches = tuple(key.pitch(d, 60) for d in key.chord_degrees(root_degree))
        score.chords.append(pitches)
        for pitch in pitches:
            score.pads.append(Note(bar * BEATS_PER_BAR, BEATS_PER_BAR, pitch, 0.5))
    score.melody = _compose_melody(rng, mood, key, chord_roots, bars)
    score.bass = _compose_bass(mood, key, chord_roots, bars)
    score.drums = _compose_drums(rng, mood, bars)
    return score
