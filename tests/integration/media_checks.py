"""Helpers for the media tests (no tests of their own): run a job of a built-in model
through a real worker and fetch its stored file, and decode and measure media the way
a person's player would see it, with PyAV (FFmpeg) and the standard library's `wave`
rather than with gengate's own encoders.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from gengate.services.gateway import Gateway
from gengate.store.jobs import JobRow
from tests.conftest import Caller
from tests.integration.test_providers import read_job, running_worker, submit, wait_for_job

TERMINAL = frozenset({"succeeded", "partial", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class Finished:
    job: JobRow
    output: dict[str, Any]  # the first stored output's record
    data: bytes  # its stored bytes


async def run_model(
    gw: Gateway, caller: Caller, model_id: str, model_input: dict[str, Any], *, timeout_s: float
) -> Finished:
    """Submit a job, run a worker until it ends, and read back its first output."""
    job = await submit(gw, caller, model_id, model_input)
    async with running_worker(gw, model_id):
        done = await wait_for_job(
            gw, job.id, lambda row: row.status in TERMINAL, timeout_s=timeout_s, what="the job"
        )
    assert done.status == "succeeded", (done.status, done.error)
    outputs = (done.result or {}).get("outputs") or []
    assert len(outputs) == 1, outputs
    data = await gw.storage.read(outputs[0]["storage_key"])
    assert data is not None
    assert len(data) == outputs[0]["bytes"]
    return Finished(await read_job(gw, job.id), outputs[0], data)


# -- audio ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: NDArray[np.float32]  # channels by frames, in [-1, 1]
    rate: int
    codec: str
    container: str

    @property
    def duration_s(self) -> float:
        return self.samples.shape[1] / self.rate

    @property
    def mono(self) -> NDArray[np.float32]:
        return np.asarray(self.samples.mean(axis=0), dtype=np.float32)


def decode_audio(data: bytes, *, stream_index: int = 0) -> DecodedAudio:
    """Every sample of an audio stream, as FFmpeg decodes it."""
    chunks: list[NDArray[np.float32]] = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[stream_index]
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            if not frame.format.is_planar:  # interleaved: one row of c0 c1 c0 c1 …
                array = array.reshape(-1, len(frame.layout.channels)).T
            scale = 32768.0 if np.issubdtype(array.dtype, np.integer) else 1.0
            chunks.append((array / scale).astype(np.float32))
        codec = stream.codec_context.name
        rate = stream.codec_context.sample_rate
        fmt = container.format.name
    return DecodedAudio(np.concatenate(chunks, axis=1), int(rate), codec, fmt)


def read_wav(data: bytes) -> DecodedAudio:
    """A 16-bit PCM WAV file read by the standard library alone."""
    with wave.open(io.BytesIO(data), "rb") as reader:
        assert reader.getsampwidth() == 2
        channels, rate = reader.getnchannels(), reader.getframerate()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
    samples = (pcm.reshape(-1, channels).T / 32768.0).astype(np.float32)
    return DecodedAudio(samples, rate, "pcm_s16le", "wav")


def rms(samples: NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def windowed_rms(samples: NDArray[np.float32], rate: int, window_s: float) -> NDArray[np.float64]:
    size = max(1, round(window_s * rate))
    usable = len(samples) // size * size
    blocks = samples[:usable].reshape(-1, size).astype(np.float64)
    return np.asarray(np.sqrt(np.mean(blocks**2, axis=1)))


def melody_pitches(
    samples: NDArray[np.float32], rate: int, *, low_hz: float = 110.0, high_hz: float = 2000.0
) -> list[int]:
    """The MIDI pitch heard in each 93 ms frame where something sounds clearly.

    Per frame: a Hann-windowed FFT, the strongest peak between `low_hz` and `high_hz`
    refined by parabolic interpolation, taken down an octave when the half frequency
    is nearly as strong (the fundamental, not its second harmonic). Frames that are
    quiet, or whose peak lies between semitones (a transition), are skipped.
    """
    size, hop = 4096, 2048
    window = np.hanning(size)
    freqs = np.fft.rfftfreq(size, 1 / rate)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    loud = 0.1 * float(np.max(np.abs(samples)))
    pitches: list[int] = []
    for begin in range(0, len(samples) - size, hop):
        frame = samples[begin : begin + size].astype(np.float64)
        if float(np.max(np.abs(frame))) < loud:
            continue
        spectrum = np.abs(np.fft.rfft(frame * window))
        spectrum[~band] = 0
        peak = int(np.argmax(spectrum))
        if peak <= 0 or peak >= len(spectrum) - 1:
            continue
        left, centre, right = spectrum[peak - 1], spectrum[peak], spectrum[peak + 1]
        shift = 0.5 * (left - right) / (left - 2 * centre + right or 1e-12)
        frequency = (peak + shift) * rate / size
        half = round(peak / 2)
        if freqs[half] >= low_hz and spectrum[half - 1 : half + 2].max() > 0.6 * centre:
            frequency /= 2
        midi = 69 + 12 * np.log2(frequency / 440.0)
        if abs(midi - round(midi)) < 0.3:
            pitches.append(int(np.rint(midi)))
    return pitches


# -- video ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecodedVideo:
    frames: list[NDArray[np.uint8]]  # RGB, height by width by 3
    width: int
    height: int
    fps: Fraction
    duration_s: float  # the video stream's duration, as the container states it
    codec: str
    pixel_format: str
    audio: DecodedAudio | None


def decode_video(data: bytes) -> DecodedVideo:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.duration is not None and stream.time_base is not None
        duration = float(stream.duration * stream.time_base)
        fps = stream.average_rate
        assert fps is not None
        codec = stream.codec_context.name
        pixel_format = stream.codec_context.pix_fmt or ""
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio = bool(container.streams.audio)
    audio = decode_audio(data) if has_audio else None
    return DecodedVideo(frames, width, height, Fraction(fps), duration, codec, pixel_format, audio)
