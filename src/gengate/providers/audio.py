"""Audio encoding for the built-in audio models: float samples to WAV, MP3 or Ogg bytes.

Samples are float arrays in [-1, 1], either mono (`(n,)`) or frames by channels
(`(n, 2)`). WAV is 16-bit PCM written by the standard library; MP3 (LAME) and Ogg
(Opus) are encoded by the FFmpeg build inside PyAV, with bit-exact flags so that the
same samples always give the same bytes. Opus only runs at 48 kHz, so Ogg output is
resampled first; a decoder gets back exactly the input's duration in every format
(the MP3 carries its encoder delay and padding in a LAME header for gapless decoding).

Pure: no I/O besides in-memory buffers, no gengate state.
"""

from __future__ import annotations

import io
import wave
from typing import Final

import av
import numpy as np
from numpy.typing import NDArray

AUDIO_FORMATS: Final = ("wav", "mp3", "ogg")
AUDIO_CONTENT_TYPES: Final = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
OPUS_RATE: Final = 48_000
# Rates LAME encodes (MPEG-1, -2 and -2.5 layer III).
MP3_RATES: Final = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000})

FloatSamples = NDArray[np.float32]


def as_frames(samples: NDArray[np.floating] | NDArray[np.integer]) -> FloatSamples:
    """`samples` as float32 frames by channels, clipped to [-1, 1]."""
    array = np.asarray(samples)
    if np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float32) / 32768.0
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] not in (1, 2):
        raise ValueError(f"expected mono (n,) or (n, 1|2) samples, got shape {array.shape}")
    return np.clip(array, -1.0, 1.0).astype(np.float32, copy=False)


def to_int16(samples: NDArray[np.floating]) -> NDArray[np.int16]:
    """Float samples to 16-bit PCM, rounded to nearest (the WAV payload)."""
    return np.round(as_frames(samples) * 32767.0).astype(np.int16)


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def resample_audio(samples: NDArray[np.floating], rate: int, new_rate: int) -> FloatSamples:
    """`samples` at `rate` resampled to `new_rate` (FFmpeg's swresample), same layout.

    The output holds `round(n * new_rate / rate)` frames: the resampler's tail is
    flushed, then trimmed or padded by at most a sample or two of rounding.
    """
    frames = as_frames(samples)
    if rate == new_rate or len(frames) == 0:
        return frames if np.asarray(samples).ndim == 2 else frames[:, 0]
    layout = _layout(frames.shape[1])
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=new_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(frames.T), format="fltp", layout=layout)
    frame.sample_rate = rate
    parts = [*resampler.resample(frame), *resampler.resample(None)]
    out = np.concatenate([part.to_ndarray() for part in parts], axis=1).T
    expected = round(len(frames) * new_rate / rate)
    if len(out) < expected:
        out = np.concatenate([out, np.zeros((expected - len(out), out.shape[1]), np.float32)])
    out = np.ascontiguousarray(out[:expected], dtype=np.float32)
    return out if np.asarray(samples).ndim == 2 else out[:, 0]


def _encode_wav(frames: FloatSamples, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(frames.shape[1])
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(to_int16(frames).astype("<i2").tobytes())
    return buffer.getvalue()


def _encode_with_ffmpeg(
    frames: FloatSamples, rate: int, *, container_format: str, codec: str, bit_rate: int
) -> bytes:
    layout = _layout(frames.shape[1])
    buffer = io.BytesIO()
    # bitexact: no version strings or random stream serials, so bytes are reproducible.
    with av.open(buffer, "w", format=container_format, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.bit_rate = bit_rate
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(frames.T), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def encode_audio(samples: NDArray[np.floating], rate: int, fmt: str) -> bytes:
    """Encode float samples (mono `(n,)` or `(n, channels)`) at `rate` Hz as `fmt`
    (`wav`, `mp3` or `ogg`); the bytes decode to the same duration."""
    frames = as_frames(samples)
    channels = frames.shape[1]
    if fmt == "wav":
        return _encode_wav(frames, rate)
    if fmt == "mp3":
        if rate not in MP3_RATES:
            raise ValueError(f"MP3 cannot carry {rate} Hz audio")
        # MPEG-2 rates (below 32 kHz) top out at 160 kbit/s.
        bit_rate = 96_000 * channels if rate >= 32_000 else 64_000 * channels
        return _encode_with_ffmpeg(
            frames, rate, container_format="mp3", codec="libmp3lame", bit_rate=bit_rate
        )
    if fmt == "ogg":
        frames = resample_audio(frames, rate, OPUS_RATE)
        return _encode_with_ffmpeg(
            frames, OPUS_RATE, container_format="ogg", codec="libopus", bit_rate=64_000 * channels
        )
    raise ValueError(f"unknown audio format {fmt!r} (expected one of {', '.join(AUDIO_FORMATS)})")
