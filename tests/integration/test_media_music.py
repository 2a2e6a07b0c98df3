"""`local-music`: a real composition (a melody of many pitches over chords, bass and
drums) whose length is honoured to the tenth of a second in every format, charged by
the second, deterministic, with lyrics spoken over the track when asked."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numpy.typing import NDArray

from gengate.config import ModelConfig
from gengate.domain.errors import InvalidInput
from gengate.providers.art import Cancelled
from gengate.providers.audio import encode_audio
from gengate.providers.local_music import LocalMusicProvider, render_music
from gengate.providers.local_voice import synthesize_speech
from gengate.providers.music_theory import compose
from gengate.providers.registry import Model
from gengate.providers.synth import SAMPLE_RATE, render_stems
from gengate.services.gateway import Gateway
from tests.conftest import Caller
from tests.integration.media_checks import (
    decode_audio,
    melody_pitches,
    read_wav,
    rms,
    run_model,
    windowed_rms,
)

MUSIC_RMS_FLOOR = 0.05
DURATION_TOLERANCE_S = 0.1
# (prompt, seed) pairs that cover every mood at the default ten seconds.
MOOD_PROMPTS = [
    ("a happy summer dance", 1),
    ("sad rainy farewell", 2),
    ("calm ocean lullaby", 3),
    ("epic battle in the storm", 4),
    ("jazzy cafe at night", 5),
    ("spooky haunted mansion", 6),
]


def assert_is_music(samples: NDArray[np.float32], rate: int, duration_s: float) -> None:
    assert abs(samples.shape[-1] / rate - duration_s) <= DURATION_TOLERANCE_S
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples
    assert rms(mono) > MUSIC_RMS_FLOOR
    # Sound all the way through (bar the fade-out), not a burst and then silence.
    body = mono[: int(len(mono) * 0.8)]
    assert (windowed_rms(body, rate, 0.5) > 0.01).all()


async def test_music_job_runs_through_the_worker(gateway: Gateway, caller: Caller) -> None:
    finished = await run_model(
        gateway,
        caller,
        "local-music",
        {"prompt": "a happy summer dance", "seed": 11, "format": "mp3"},
        timeout_s=60,
    )
    audio = decode_audio(finished.data)
    assert (audio.container, audio.codec, audio.rate) == ("mp3", "mp3float", SAMPLE_RATE)
    assert audio.samples.shape[0] == 2  # stereo
    assert_is_music(audio.samples, audio.rate, 10.0)
    assert finished.output["content_type"] == "audio/mpeg"
    assert finished.output["duration_sec"] == pytest.approx(10.0, abs=0.001)
    # 0.5 credit per second: 10 s reserve and cost 5 credits.
    assert finished.job.reserved_micro == 50_000
    assert finished.job.cost_micro == 50_000


async def test_duration_is_clamped_to_the_models_range(gateway: Gateway, caller: Caller) -> None:
    model = gateway.catalog.get("local-music")
    assert model.reservation_micro(model.validate_input({"prompt": "x", "duration": 600})) == (
        120 * 5_000
    )
    finished = await run_model(
        gateway, caller, "local-music", {"prompt": "short", "duration": 0.2}, timeout_s=60
    )
    audio = read_wav(finished.data)
    assert audio.duration_s == pytest.approx(1.0, abs=1e-6)
    assert finished.job.cost_micro == 5_000  # one second, the shortest piece


def test_schema_refuses_unknown_fields_and_formats() -> None:
    model = Model("local-music", LocalMusicProvider(), ModelConfig(), 1)
    assert model.input_schema["additionalProperties"] is False
    assert model.input_schema["required"] == ["prompt"]
    filled = model.validate_input({"prompt": "x"})
    assert (filled["duration"], filled["is_instrumental"], filled["format"]) == (10.0, True, "wav")
    for bad in ({"prompt": "x", "format": "flac"}, {"prompt": "x", "tempo": 120}, {}):
        with pytest.raises(InvalidInput):
            model.validate_input(bad)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_every_format_decodes_to_the_asked_duration(fmt: str) -> None:
    rendering = render_music("a gentle morning", 9, 3.7, lyrics=None, stop=threading.Event())
    encoded = encode_audio(rendering.samples, SAMPLE_RATE, fmt)
    audio = decode_audio(encoded)
    assert audio.container == {"wav": "wav", "mp3": "mp3", "ogg": "ogg"}[fmt]
    assert audio.codec == {"wav": "pcm_s16le", "mp3": "mp3float", "ogg": "opus"}[fmt]
    assert_is_music(audio.samples, audio.rate, 3.7)


@pytest.mark.parametrize(("prompt", "seed"), MOOD_PROMPTS)
def test_the_melody_has_many_pitches(prompt: str, seed: int) -> None:
    """The melody stem alone, analysed by ear (FFT): more than five distinct pitches,
    each one a note the score asked for."""
    score = compose(prompt, seed, 10.0)
    total = round(10.0 * SAMPLE_RATE)
    melody = render_stems(score, np.random.default_rng(seed), total=total)["melody"]
    heard = melody_pitches(melody, SAMPLE_RATE)
    # A pitch counts when it is heard in at least two frames (not a passing blur).
    values, counts = np.unique(heard, return_counts=True)
    distinct = {int(v) for v, c in zip(values, counts, strict=True) if c >= 2}
    assert len(distinct) > 5, (score.mood, sorted(distinct))
    assert distinct <= {note.pitch for note in score.melody}


def test_mood_words_pick_mode_and_tempo() -> None:
    happy = compose("a happy sunny song", 1, 10)
    sad = compose("a sad and lonely song", 1, 10)
    epic = compose("an epic battle", 1, 10)
    assert happy.mode in ("major", "mixolydian") and 108 <= happy.tempo <= 128
    assert sad.mode == "minor" and 66 <= sad.tempo <= 84
    assert epic.mode in ("harmonic_minor", "minor") and 120 <= epic.tempo <= 140
    # Same prompt, another seed: same mood, another piece.
    other = compose("a happy sunny song", 2, 10)
    assert other.mood == happy.mood
    assert [n.pitch for n in other.melody] != [n.pitch for n in happy.melody]


@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg"])
def test_same_seed_same_decoded_samples(fmt: str) -> None:
    def decoded(seed: int) -> NDArray[np.float32]:
        rendering = render_music("epic battle", seed, 2.5, lyrics=None, stop=threading.Event())
        return decode_audio(encode_audio(rendering.samples, SAMPLE_RATE, fmt)).samples

    first = decoded(5)
    assert np.array_equal(first, decoded(5))
    other = decoded(6)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_lyrics_are_spoken_over_the_track() -> None:
    lines = ["Hello sunshine", "We sing along tonight"]
    stop = threading.Event()
    sung = render_music("a happy song", 4, 12.0, lyrics="\n".join(lines), stop=stop)
    plain = render_music("a happy song", 4, 12.0, lyrics=None, stop=stop)
    assert [line.text for line in sung.lines] == lines
    bar = round(4 * sung.score.seconds_per_beat * SAMPLE_RATE)
    for line in sung.lines:
        assert line.start % bar == 0  # each line starts on a bar line
    # The voice is in the mix: the mix matches the spoken line where it was placed,
    # far better than the instrumental version does.
    first = sung.lines[0]
    speech, rate = synthesize_speech(first.text, voice="joe", stop=stop, seed=4)
    voice = first.samples
    assert len(voice) == pytest.approx(len(speech) * SAMPLE_RATE / rate, abs=2)
    window = slice(first.start, first.start + len(voice))

    def correlation(samples: NDArray[np.float32]) -> float:
        mix = samples[window].mean(axis=1)
        return float(np.corrcoef(mix, voice)[0, 1])

    assert correlation(sung.samples) > 0.3
    assert abs(correlation(plain.samples)) < 0.1
    assert_is_music(sung.samples.T, SAMPLE_RATE, 12.0)


def test_stop_ends_rendering() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        render_music("anything", 1, 120.0, lyrics=None, stop=stop)
