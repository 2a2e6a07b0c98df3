"""`local-story`: one picture per scene, in order, at the asked size, plus a spoken
narration that decodes to speech; a failing scene makes the job partial and charged for
the scenes made, through a real worker on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gengate.domain.errors import InvalidInput
from gengate.providers.art import render
from gengate.providers.local_story import plan_scenes, render_scene
from gengate.services.gateway import Gateway
from gengate.store.jobs import JobRow
from tests.conftest import Caller
from tests.integration.media_checks import TERMINAL, read_wav, rms, windowed_rms
from tests.integration.test_providers import (
    assert_uncharged,
    ledger_of,
    money,
    read_job,
    running_worker,
    submit,
    wait_for_job,
)

STORY = (
    "A small fox wakes in a green forest. The fox follows a cold river to the sea. "
    "A storm rolls over the dark water. At dawn the fox sleeps under a pink sky."
)
SCENE_MICRO = 10_000  # 1 credit per scene
# A fast talker says 200 words a minute; the narration must not be quicker (words
# dropped) nor more than three times slower, pauses between scenes included.
FAST_TALKER_S_PER_WORD = 60 / 200


async def run_story(
    gw: Gateway, caller: Caller, model_input: dict[str, Any], *, timeout_s: float = 60
) -> JobRow:
    job = await submit(gw, caller, "local-story", model_input)
    async with running_worker(gw, "local-story"):
        return await wait_for_job(
            gw, job.id, lambda row: row.status in TERMINAL, timeout_s=timeout_s, what="the story"
        )


async def stored(gw: Gateway, output: dict[str, Any]) -> bytes:
    data = await gw.storage.read(output["storage_key"])
    assert data is not None and len(data) == output["bytes"]
    return data


def decoded_picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def expected_picture(prompt: str, seed: int, number: int, width: int, height: int) -> Any:
    """Scene `number` of the story as the plan draws it (the order check)."""
    scene = plan_scenes(prompt, 4, seed)[number - 1]
    return render(scene.picture_prompt, seed, width, height, index=scene.number)


def assert_narration(data: bytes, lines: list[str], duration_sec: float) -> None:
    audio = read_wav(data)
    assert audio.samples.shape[0] == 1 and audio.rate == 22_050
    assert duration_sec == pytest.approx(audio.duration_s, abs=0.002)
    words = sum(len(line.split()) for line in lines)
    assert words * FAST_TALKER_S_PER_WORD <= audio.duration_s <= 3 * words * FAST_TALKER_S_PER_WORD
    samples = audio.samples[0]
    assert rms(samples) > 0.03
    # Voiced most of the time, not one blip and then silence.
    assert (windowed_rms(samples, audio.rate, 0.1) > 0.02).mean() > 0.5


async def test_a_story_makes_one_picture_per_scene_in_order(
    gateway: Gateway, caller: Caller
) -> None:
    before = await money(gateway, caller)
    model_input = {"prompt": STORY, "seed": 21, "width": 160, "height": 96}
    done = await run_story(gateway, caller, model_input)
    assert done.status == "succeeded", done.error
    outputs = done.result["outputs"]
    assert [o["content_type"] for o in outputs] == ["image/png"] * 4
    pictures = []
    for number, output in enumerate(outputs, start=1):
        assert (output["width"], output["height"]) == (160, 96)
        image = decoded_picture(await stored(gateway, output))
        assert image.size == (160, 96) and image.mode == "RGB"
        pixels = np.asarray(image)
        assert np.array_equal(pixels, expected_picture(STORY, 21, number, 160, 96))
        pictures.append(pixels)
    # Four different scenes, not one picture four times.
    assert len({p.tobytes() for p in pictures}) == 4
    job = await read_job(gateway, done.id)
    assert (job.reserved_micro, job.cost_micro) == (4 * SCENE_MICRO, 4 * SCENE_MICRO)
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - 4 * SCENE_MICRO
    assert after.reserved_micro == before.reserved_micro


async def test_a_narrated_story_ends_with_its_narration(gateway: Gateway, caller: Caller) -> None:
    model_input = {"prompt": STORY, "scenes": 2, "narrate": True, "width": 96, "height": 96}
    done = await run_story(gateway, caller, model_input)
    assert done.status == "succeeded", done.error
    outputs = done.result["outputs"]
    assert [o["content_type"] for o in outputs] == ["image/png", "image/png", "audio/wav"]
    for output in outputs[:2]:
        assert decoded_picture(await stored(gateway, output)).size == (96, 96)
    narration = outputs[2]
    assert (narration["width"], narration["height"]) == (None, None)
    # Two sentences per scene: all four are narrated.
    assert_narration(await stored(gateway, narration), [STORY], narration["duration_sec"])
    # Written while the narration was spoken (a second, against 0.05 s of throttling).
    assert (done.scenes_completed, done.scenes_total) == (2, 2)
    assert done.cost_micro == 2 * SCENE_MICRO


async def test_a_failing_scene_makes_the_story_partial(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    model_input = {
        "prompt": STORY,
        "seed": 8,
        "scenes": 4,
        "narrate": True,
        "width": 128,
        "height": 128,
        "fail_scene": 3,
    }
    done = await run_story(gateway, caller, model_input)
    assert done.status == "partial", (done.status, done.error)
    assert done.error is None
    outputs = done.result["outputs"]
    # The scenes made, in order, then the narration of those scenes.
    assert [o["content_type"] for o in outputs] == ["image/png", "image/png", "audio/wav"]
    for number, output in enumerate(outputs[:2], start=1):
        pixels = np.asarray(decoded_picture(await stored(gateway, output)))
        assert np.array_equal(pixels, expected_picture(STORY, 8, number, 128, 128))
    lines = [scene.narration for scene in plan_scenes(STORY, 4, 8)[:2]]
    assert_narration(await stored(gateway, outputs[2]), lines, outputs[2]["duration_sec"])
    # Progress says which scenes exist (written while the narration was spoken).
    assert (done.scenes_completed, done.scenes_total) == (2, 4)
    # Reserved for four scenes, charged for the two made.
    job = await read_job(gateway, done.id)
    assert (job.reserved_micro, job.cost_micro) == (4 * SCENE_MICRO, 2 * SCENE_MICRO)
    assert await ledger_of(gateway, caller, done.id) == {
        "reserve": [4 * SCENE_MICRO],
        "release": [4 * SCENE_MICRO],
        "charge": [2 * SCENE_MICRO],
    }
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - 2 * SCENE_MICRO
    assert after.reserved_micro == before.reserved_micro


async def test_a_story_whose_first_scene_fails_is_not_charged(
    gateway: Gateway, caller: Caller
) -> None:
    before = await money(gateway, caller)
    done = await run_story(
        gateway, caller, {"prompt": STORY, "scenes": 3, "width": 64, "height": 64, "fail_scene": 1}
    )
    assert done.status == "failed"
    assert done.error is not None and done.error["code"] == "provider_error"
    assert "Scene 1" in done.error["message"]
    await assert_uncharged(gateway, caller, await read_job(gateway, done.id), before)


def test_scenes_follow_the_beats_of_the_prompt() -> None:
    # Four sentences, two scenes: two sentences each, in order.
    two = plan_scenes(STORY, 2, 1)
    sentences = [s.strip() + "." for s in STORY.rstrip(".").split(". ")]
    assert [s.narration for s in two] == [" ".join(sentences[:2]), " ".join(sentences[2:])]
    # Fewer sentences than scenes: each beat spans scenes in turn, told with a transition.
    short = plan_scenes("A lighthouse stands on a cliff. The sea is calm.", 5, 1)
    assert [s.number for s in short] == [1, 2, 3, 4, 5]
    assert short[0].narration == "A lighthouse stands on a cliff."
    assert short[1].narration.endswith("a lighthouse stands on a cliff.")
    assert short[1].narration != short[0].narration
    assert short[-1].narration == "In the end, the sea is calm."
    # A scene without colour words keeps the story's palette.
    storm = plan_scenes(STORY, 4, 1)[2]
    assert storm.picture_prompt == "A storm rolls over the dark water. green forest sea pink sky"
    assert plan_scenes(STORY, 4, 1)[0].picture_prompt == "A small fox wakes in a green forest."
    # Deterministic for the prompt and seed.
    assert plan_scenes(STORY, 7, 3) == plan_scenes(STORY, 7, 3)


def test_the_same_seed_draws_the_same_scene() -> None:
    stop = threading.Event()
    scene = plan_scenes(STORY, 4, 2)[0]
    first = render_scene(scene, 2, 96, 64, False, stop=stop)
    assert render_scene(scene, 2, 96, 64, False, stop=stop) == first
    assert render_scene(scene, 3, 96, 64, False, stop=stop) != first


def test_the_schema_follows_the_contract(gateway: Gateway) -> None:
    model = gateway.catalog.get("local-story")
    assert model.modality == "story"
    assert model.validate_input({"prompt": "x"}) == {
        "prompt": "x",
        "scenes": 4,
        "narrate": False,
        "width": 512,
        "height": 512,
    }
    for bad in (
        {"prompt": "x", "scenes": 0},
        {"prompt": "x", "scenes": 13},
        {"prompt": "x", "width": 63},
        {"prompt": "x", "height": 2049},
        {"prompt": "x", "voice": "joe"},
        {"scenes": 2},
    ):
        with pytest.raises(InvalidInput):
            model.validate_input(bad)
    # 1 credit per scene asked for.
    assert model.reservation_micro(model.validate_input({"prompt": "x", "scenes": 12})) == 120_000
