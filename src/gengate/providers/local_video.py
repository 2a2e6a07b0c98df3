"""`local-video`: procedural animation with a soundtrack, as MP4 (H.264 + AAC).

Frames come from `art.plan_animation` / `art.render_animation_frame` (the same
palette and composition as `local-image`, in motion), computed on a small canvas and
scaled to the asked size by FFmpeg's scaler while converting to YUV 4:2:0. The
soundtrack is a `local-music` composition for the same prompt and seed, as long as
the video. Both are encoded by the FFmpeg build inside PyAV (libx264 and the native
AAC encoder) with fixed settings and a fixed thread count, so the same input always
decodes to the same frames and samples.

Work runs in a worker thread (`ctx.run_cpu`), with the stop event checked before every
frame and progress reported after each batch of frames.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

import av
import numpy as np
from numpy.typing import NDArray

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import Cancelled, plan_animation, render_animation_frame
from gengate.providers.audio import as_frames
from gengate.providers.base import GenerationContext, GenerationResult, Provider, prompt_schema
from gengate.providers.local_music import render_music
from gengate.providers.progress import ThreadProgress
from gengate.providers.synth import SAMPLE_RATE

MIN_DURATION_S: Final = 1
MAX_DURATION_S: Final = 20
MIN_SIDE: Final = 64
MAX_SIDE: Final = 1920
MAX_FPS: Final = 30
FRAMES_PER_BATCH: Final = 12
# x264: "superfast" costs about 12 ms of CPU per 720p frame (veryfast 17, for files
# about 40 % smaller; ultrafast 5, but blocky at the same quality setting). The thread
# count is fixed: x264 repeats its output for a given count, not across counts.
X264_OPTIONS: Final = {"preset": "superfast", "crf": "23", "threads": "2"}
AUDIO_BIT_RATE: Final = 128_000
# How much of the job's progress the soundtrack takes (the frames take the rest).
SOUNDTRACK_SHARE: Final = 0.1


def video_seed(prompt: str, model_input: Mapping[str, Any]) -> int:
    if "seed" in model_input:
        return int(model_input["seed"])
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


def frame_count(duration_s: float, fps: int) -> int:
    return max(1, round(duration_s * fps))


def _audio_packets(
    container: av.container.OutputContainer, samples: NDArray[np.float32]
) -> list[av.Packet[av.audio.stream.AudioStream]]:
    """The soundtrack encoded as AAC packets for `container`, in order."""
    stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
    stream.bit_rate = AUDIO_BIT_RATE
    stream.codec_context.flags |= av.codec.context.Flags.bitexact
    frames = as_frames(samples)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(frames.T), format="fltp", layout="stereo"
    )
    frame.sample_rate = SAMPLE_RATE
    frame.pts = 0
    return [*stream.encode(frame), *stream.encode(None)]


def render_video(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    fps: int,
    duration_s: float,
    progress: Callable[[float], None],
    *,
    stop: threading.Event,
) -> tuple[bytes, int]:
    """The MP4 bytes and the number of frames (run in a worker thread)."""
    frames = frame_count(duration_s, fps)
    soundtrack = render_music(prompt, seed, frames / fps, lyrics=None, stop=stop).samples
    progress(SOUNDTRACK_SHARE)
    animation = plan_animation(prompt, seed, width, height)
    buffer = io.BytesIO()
    # bitexact: no encoder version strings, so equal inputs give equal files.
    with av.open(buffer, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=fps, options=dict(X264_OPTIONS))
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.codec_context.flags |= av.codec.context.Flags.bitexact
        pending_audio = _audio_packets(container, soundtrack)
        audio_time_base = Fraction(1, SAMPLE_RATE)
        for index in range(frames):
            # Checked every frame (a large frame takes tens of milliseconds to encode).
            if stop.is_set():
                raise Cancelled()
            if index and index % FRAMES_PER_BATCH == 0:
                progress(SOUNDTRACK_SHARE + (1 - SOUNDTRACK_SHARE) * index / frames)
            pixels = render_animation_frame(animation, index / fps)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(
                width=width, height=height, format="yuv420p", interpolation="BICUBIC"
            )
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
            # Interleave: hand over the audio that plays up to this frame's time.
            while pending_audio and (pending_audio[0].pts or 0) * audio_time_base <= Fraction(
                index + 1, fps
            ):
                container.mux(pending_audio.pop(0))
        for packet in video.encode(None):
            container.mux(packet)
        for packet in pending_audio:
            container.mux(packet)
    progress(1.0)
    return buffer.getvalue(), frames


class LocalVideoProvider(Provider):
    modality = "video"
    description = (
        "Procedural animation on the CPU, shaped by the prompt and seed, with a matching "
        "soundtrack (MP4: H.264 video, AAC audio)."
    )
    price = Price(PriceUnit.SECOND, Decimal(1))

    def input_schema(self) -> dict[str, Any]:
        side = {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE, "multipleOf": 2}
        return prompt_schema(
            {
                "duration": {
                    "type": "number",
                    "minimum": MIN_DURATION_S,
                    "maximum": MAX_DURATION_S,
                    "default": 4,
                    "description": "Seconds of video.",
                },
                "width": {**side, "default": 640, "description": "Pixels; even."},
                "height": {**side, "default": 360, "description": "Pixels; even."},
                "fps": {"type": "integer", "minimum": 1, "maximum": MAX_FPS, "default": 24},
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return float(model_input.get("duration", 4))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        width, height, fps = int(data["width"]), int(data["height"]), int(data["fps"])
        asked = float(data["duration"])
        encoded, frames = await ctx.run_cpu(
            render_video,
            prompt,
            video_seed(prompt, data),
            width,
            height,
            fps,
            asked,
            ThreadProgress(ctx),
        )
        duration = frames / fps
        await ctx.save_output(
            encoded, "video/mp4", width=width, height=height, duration_sec=round(duration, 3)
        )
        # Whole frames may run a fraction of a frame past the asked duration; the
        # reservation (the asked duration) is the most a video is charged.
        return GenerationResult(units=min(duration, asked))

    def limits(self) -> dict[str, Any]:
        return {
            "max_duration_s": MAX_DURATION_S,
            "max_side": MAX_SIDE,
            "max_fps": MAX_FPS,
        }
