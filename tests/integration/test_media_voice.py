"""`local-voice`: intelligible-length, non-silent speech from the neural and the
espeak-ng voices, offline, deterministic, priced by characters, split by sentence."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any, NoReturn

import numpy as np
import pytest

from gengate.domain.errors import InvalidInput
from gengate.providers import local_voice
from gengate.providers.art import Cancelled
from gengate.providers.audio import encode_audio
from gengate.providers.local_voice import (
    VOICES,
    speak_lines,
    split_sentences,
    synthesize_speech,
)
from gengate.services.gateway import Gateway
from tests.conftest import Caller
from tests.integration.media_checks import decode_audio, read_wav, rms, run_model, windowed_rms
from tests.integration.test_providers import (
    assert_uncharged,
    money,
    read_job,
    running_worker,
    submit,
    wait_for_status,
)

TEXT = (
    "Welcome to the gateway. Submit a job, poll its status, and download the result "
    "when it is ready. Credits are reserved when you submit and charged when it succeeds."
)
# A fast talker says 200 words a minute: speech must not be quicker than that (words
# dropped), nor more than three times slower (stalls, runaway silence).
FAST_TALKER_S_PER_WORD = 60 / 200
SPEECH_RMS_FLOOR = 0.03


def expected_speaking_s(text: str) -> float:
    return len(text.split()) * FAST_TALKER_S_PER_WORD


def assert_is_speech(samples: np.ndarray[Any, Any], rate: int, text: str) -> None:
    duration = len(samples) / rate
    expected = expected_speaking_s(text)
    assert expected <= duration <= 3 * expected, (duration, expected)
    assert rms(samples) > SPEECH_RMS_FLOOR
    # Speech is voiced most of the time: not one blip followed by silence.
    voiced = windowed_rms(samples, rate, 0.1) > 0.02
    assert voiced.mean() > 0.5, voiced.mean()


async def test_voice_job_runs_through_the_worker(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    finished = await run_model(
        gateway, caller, "local-voice", {"text": TEXT, "seed": 7}, timeout_s=60
    )
    audio = read_wav(finished.data)
    assert audio.rate == 22_050 and audio.samples.shape[0] == 1
    assert_is_speech(audio.samples[0], audio.rate, TEXT)
    assert finished.output["content_type"] == "audio/wav"
    assert finished.output["duration_sec"] == pytest.approx(audio.duration_s, abs=0.002)
    # 0.1 credit per 100 characters, rounded up: 164 characters cost 0.2 credit.
    hundreds = math.ceil(len(TEXT) / 100)
    assert finished.job.reserved_micro == hundreds * 1000
    assert finished.job.cost_micro == hundreds * 1000
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - hundreds * 1000
    assert after.reserved_micro == before.reserved_micro


async def test_mp3_speech_from_the_espeak_voice(gateway: Gateway, caller: Caller) -> None:
    text = "The lightweight voice speaks quickly. It is robotic, but clear."
    finished = await run_model(
        gateway,
        caller,
        "local-voice",
        {"text": text, "voice": "espeak-female", "format": "mp3"},
        timeout_s=30,
    )
    audio = decode_audio(finished.data)
    assert (audio.container, audio.codec) == ("mp3", "mp3float")
    assert_is_speech(audio.mono, audio.rate, text)
    assert finished.output["content_type"] == "audio/mpeg"
    assert finished.output["duration_sec"] == pytest.approx(audio.duration_s, abs=0.01)


async def test_text_with_nothing_to_say_fails_uncharged(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "local-voice", {"text": "... !!! ???"})
    async with running_worker(gateway, "local-voice"):
        done = await wait_for_status(gateway, job.id, "failed", timeout_s=30)
    assert done.error is not None and done.error["code"] == "invalid_input"
    await assert_uncharged(gateway, caller, await read_job(gateway, job.id), before)


async def test_schema_requires_text_and_caps_it(gateway: Gateway, caller: Caller) -> None:
    model = gateway.catalog.get("local-voice")
    assert model.input_schema["additionalProperties"] is False
    assert model.input_schema["required"] == ["text"]
    filled = model.validate_input({"text": "hi"})  # no prompt needed
    assert filled["voice"] == "joe" and filled["format"] == "wav"
    for bad in ({}, {"text": "x" * 5001}, {"text": "hi", "voice": "nobody"}, {"text": "  "}):
        with pytest.raises(InvalidInput):
            model.validate_input(bad)
    # The reservation is priced from the text: 5000 characters, 50 hundreds, 5 credits.
    assert model.reservation_micro(model.validate_input({"text": "x" * 5000})) == 50_000
    assert model.reservation_micro(model.validate_input({"text": "x" * 101})) == 2_000


@pytest.mark.parametrize("voice", list(VOICES))
def test_same_seed_same_samples(voice: str) -> None:
    stop = threading.Event()
    first, rate = synthesize_speech("Same words, same sound.", voice=voice, stop=stop, seed=3)
    again, _ = synthesize_speech("Same words, same sound.", voice=voice, stop=stop, seed=3)
    assert rate == 22_050
    assert first.dtype == np.float32 and first.ndim == 1
    assert np.array_equal(first, again)
    # Compressed, the decoded samples are equal too.
    assert np.array_equal(
        decode_audio(encode_audio(first, rate, "mp3")).samples,
        decode_audio(encode_audio(again, rate, "mp3")).samples,
    )


def test_the_neural_voice_varies_with_the_seed() -> None:
    stop = threading.Event()
    one, _ = synthesize_speech("A voice with a little life in it.", voice="joe", stop=stop, seed=1)
    two, _ = synthesize_speech("A voice with a little life in it.", voice="joe", stop=stop, seed=2)
    assert not np.array_equal(one, two)


def _refuse_network(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("speech synthesis tried to reach the network")


def test_speech_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the voices and speaking happen with every socket connection refused."""
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse_network)
    monkeypatch.setattr(socket, "create_connection", _refuse_network)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse_network)
    # Load the models afresh under the block, not from an earlier test's cache.
    local_voice._piper_model.cache_clear()
    local_voice._espeak.cache_clear()
    for voice in VOICES:
        samples, rate = synthesize_speech(TEXT, voice=voice, stop=threading.Event())
        assert_is_speech(samples, rate, TEXT)


def test_long_text_is_spoken_sentence_by_sentence() -> None:
    sentences = [f"This is sentence number {n}." for n in range(1, 9)]
    text = " ".join(sentences)
    progress: list[tuple[int, int]] = []
    samples, rate = synthesize_speech(
        text,
        voice="espeak",
        stop=threading.Event(),
        on_sentence=lambda done, total: progress.append((done, total)),
    )
    assert progress == [(n, 8) for n in range(1, 9)]
    assert_is_speech(samples, rate, text)
    # The pauses between sentences are audible gaps.
    quiet = windowed_rms(samples, rate, 0.05) < 1e-4
    gaps = int(np.sum(quiet[1:] & ~quiet[:-1]))
    assert gaps >= 7


def test_stop_is_honoured_between_sentences() -> None:
    stop = threading.Event()
    spoken: list[int] = []

    def after_sentence(done: int, total: int) -> None:
        spoken.append(done)
        if done == 2:
            stop.set()

    began = time.monotonic()
    with pytest.raises(Cancelled):
        synthesize_speech(
            " ".join(["One more sentence to say."] * 40),
            voice="joe",
            stop=stop,
            on_sentence=after_sentence,
        )
    assert spoken == [1, 2]
    assert time.monotonic() - began < 30


def test_sentences_are_split_and_bounded() -> None:
    assert split_sentences("Hi there. How are you?\n\nFine!  ") == [
        "Hi there.",
        "How are you?",
        "Fine!",
    ]
    assert split_sentences("...  ?! ") == []
    run_on = " ".join(f"word{n}" for n in range(200))
    pieces = split_sentences(run_on, max_chars=120)
    assert all(0 < len(piece) <= 120 for piece in pieces)
    assert " ".join(pieces) == run_on  # nothing lost or reordered
    unbroken = "x" * 700
    assert "".join(split_sentences(unbroken, max_chars=280)) == unbroken


def test_many_lines_share_one_voice() -> None:
    """`speak_lines` (used for lyrics) speaks line by line with one model session; its
    first line is what `synthesize_speech` says for that line alone."""
    stop = threading.Event()
    lines = ["Out on the open road.", "We sing into the night.", "And the night sings back."]
    spoken = list(speak_lines(lines, voice="joe", stop=stop, seed=9))
    assert len(spoken) == 3
    for samples, rate in spoken:
        assert rate == 22_050
        assert len(samples) / rate > 1.0 and rms(samples) > SPEECH_RMS_FLOOR
    assert not np.array_equal(spoken[1][0][:1000], spoken[2][0][:1000])
    alone, _ = synthesize_speech(lines[0], voice="joe", stop=stop, seed=9)
    assert np.array_equal(spoken[0][0], alone)
