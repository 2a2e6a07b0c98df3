"""`local-video`: an H.264 MP4 with the asked size, frame count and duration, that
moves, has a soundtrack, repeats frame for frame, is charged by the second, and
stops promptly when cancelled."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest

from gengate.config import ModelConfig
from gengate.domain.errors import InvalidInput
from gengate.providers.art import Cancelled
from gengate.providers.local_video import LocalVideoProvider, render_video
from gengate.providers.registry import Model
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from tests.conftest import Caller
from tests.integration.media_checks import DecodedVideo, decode_video, rms, run_model
from tests.integration.test_providers import (
    assert_uncharged,
    money,
    output_rows,
    read_job,
    running_worker,
    submit,
    wait_for_job,
)

# SPEC §3 asks cancellation to reach a job within a second; the render thread checks
# the stop signal before every frame (a 1080p frame takes well under 0.1 s here).
CANCEL_BOUND_S = 5.0
# SPEC §3's second, for the render loop alone (one 720p frame takes ~30 ms here).
STOP_BOUND_S = 1.0


def assert_is_video(video: DecodedVideo, *, width: int, height: int, fps: int, frames: int) -> None:
    assert video.codec == "h264" and video.pixel_format == "yuv420p"
    assert (video.width, video.height) == (width, height)
    assert len(video.frames) == frames
    assert all(frame.shape == (height, width, 3) for frame in video.frames)
    assert video.fps == fps
    assert video.duration_s == pytest.approx(frames / fps, abs=1e-6)
    # A picture, not a flat colour: the frame has detail …
    assert float(np.std(video.frames[0])) > 10
    # … and it moves: consecutive frames differ, and the last is far from the first.
    steps = [
        float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))
        for a, b in zip(video.frames, video.frames[1:], strict=False)
    ]
    assert min(steps) > 0.05
    assert float(np.mean(np.abs(video.frames[0].astype(np.int16) - video.frames[-1]))) > 3
    # The soundtrack lasts as long as the picture and is not silence.
    assert video.audio is not None
    assert video.audio.codec == "aac" and video.audio.samples.shape[0] == 2
    assert video.audio.duration_s == pytest.approx(frames / fps, abs=0.1)
    assert rms(video.audio.mono) > 0.05


async def test_video_job_runs_through_the_worker(gateway: Gateway, caller: Caller) -> None:
    finished = await run_model(
        gateway,
        caller,
        "local-video",
        {
            "prompt": "glowing jellyfish in a dark sea",
            "width": 192,
            "height": 108,
            "fps": 12,
            "duration": 2,
        },
        timeout_s=60,
    )
    video = decode_video(finished.data)
    assert_is_video(video, width=192, height=108, fps=12, frames=24)
    output = finished.output
    assert output["content_type"] == "video/mp4"
    assert (output["width"], output["height"], output["duration_sec"]) == (192, 108, 2.0)
    # 1 credit per second: 2 s reserve and cost 2 credits.
    assert finished.job.reserved_micro == 20_000
    assert finished.job.cost_micro == 20_000


async def test_cancel_stops_the_render_and_charges_nothing(
    gateway: Gateway, caller: Caller
) -> None:
    before = await money(gateway, caller)
    # Far more work than the test will wait for: 20 s of 1080p.
    job = await submit(
        gateway,
        caller,
        "local-video",
        {"prompt": "a long storm", "width": 1920, "height": 1080, "fps": 30, "duration": 20},
    )
    async with running_worker(gateway, "local-video") as runtime:
        await wait_for_job(
            gateway, job.id, lambda row: row.progress > 10, timeout_s=60, what="frames rendered"
        )
        asked = time.monotonic()
        await job_service.cancel_job(gateway, caller.principal, job_service.public_job_id(job))
        # The worker's run ends once the render thread has seen the stop signal.
        await runtime.drain(timeout_s=CANCEL_BOUND_S)
        assert time.monotonic() - asked < CANCEL_BOUND_S
    done = await read_job(gateway, job.id)
    assert done.status == "cancelled"
    assert done.progress < 100
    assert await output_rows(gateway, job.id) == []
    await assert_uncharged(gateway, caller, done, before)


def test_schema_and_price() -> None:
    model = Model("local-video", LocalVideoProvider(), ModelConfig(), 1)
    filled = model.validate_input({"prompt": "x"})
    assert (filled["duration"], filled["width"], filled["height"], filled["fps"]) == (
        4,
        640,
        360,
        24,
    )
    assert model.reservation_micro(filled) == 40_000
    assert model.reservation_micro(model.validate_input({"prompt": "x", "duration": 20})) == (
        200_000
    )
    for bad in (
        {"prompt": "x", "duration": 21},
        {"prompt": "x", "duration": 0.5},
        {"prompt": "x", "width": 641},  # odd sizes cannot be 4:2:0
        {"prompt": "x", "height": 4000},
        {"prompt": "x", "fps": 0},
        {"prompt": "x", "codec": "vp9"},
        {"duration": 4},
    ):
        with pytest.raises(InvalidInput):
            model.validate_input(bad)


def _fingerprint(data: bytes) -> tuple[list[str], str]:
    video = decode_video(data)
    frames = [hashlib.sha256(frame.tobytes()).hexdigest() for frame in video.frames]
    assert video.audio is not None
    return frames, hashlib.sha256(video.audio.samples.tobytes()).hexdigest()


def test_same_seed_same_frames_and_sound() -> None:
    def render(seed: int) -> bytes:
        data, frames = render_video(
            "sunset over the desert", seed, 160, 90, 10, 1.5, lambda _: None, stop=threading.Event()
        )
        assert frames == 15
        return data

    first = _fingerprint(render(1))
    assert _fingerprint(render(1)) == first
    other = _fingerprint(render(2))
    assert other[0] != first[0] and other[1] != first[1]


def test_progress_is_reported_per_batch_and_stop_is_prompt() -> None:
    reports: list[float] = []
    stop = threading.Event()
    stopped_at: list[float] = []

    def progress(fraction: float) -> None:
        reports.append(fraction)
        if len(reports) == 3:
            stopped_at.append(time.monotonic())
            stop.set()

    with pytest.raises(Cancelled):
        render_video("a long storm", 1, 1280, 720, 24, 20, progress, stop=stop)
    # The next frame does not start: the render ends within one frame's time.
    assert time.monotonic() - stopped_at[0] < STOP_BOUND_S
    assert reports == sorted(reports) and len(reports) == 3
    # The soundtrack, then one report per batch of 12 frames of 480.
    assert reports[1] == pytest.approx(0.1 + 0.9 * 12 / 480)
