"""`local-story`: one picture per scene of a story, and optionally a narration track.

The story prompt is split into beats (its sentences). With at least as many sentences as
scenes, consecutive sentences are grouped so that every scene gets a share in order;
with fewer, each beat spans several scenes in turn, and a repeated beat is narrated with
a transition ("Later, …"). Each scene's picture is `art.render` of the scene's beat plus
the story's colour words (so every scene keeps the story's palette unless its beat names
its own colours), with the story's seed and the scene's number as the image index:
deterministic for the prompt, seed and size.

With `narrate`, the scenes' lines are spoken by the `joe` voice of `local-voice`
(`speak_lines`: one model session for all lines) and joined with a pause into one WAV.

Scenes are made in order. A scene that fails ends the run there: the job is `partial`,
its outputs are the scenes made so far (a prefix of the story, so `scenes_completed`
says exactly which), followed by the narration of those scenes, and it is charged
for those scenes. A story whose first scene fails makes nothing and fails, uncharged.
`fail_scene` is a test aid that makes one scene fail on purpose.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import HUE_WORDS, Cancelled, render
from gengate.providers.audio import AUDIO_CONTENT_TYPES, encode_audio
from gengate.providers.base import (
    GenerationContext,
    GenerationError,
    GenerationResult,
    Provider,
    prompt_schema,
)
from gengate.providers.local_image import default_seed, encode
from gengate.providers.local_voice import DEFAULT_VOICE, speak_lines, split_sentences

MIN_SCENES: Final = 1
MAX_SCENES: Final = 12
DEFAULT_SCENES: Final = 4
MIN_SIDE: Final = 64
MAX_SIDE: Final = 2048
DEFAULT_SIDE: Final = 512
NARRATION_VOICE: Final = DEFAULT_VOICE
NARRATION_FORMAT: Final = "wav"
SCENE_PAUSE_S: Final = 0.8
# How much of the job's progress the pictures take when there is a narration.
PICTURES_SHARE: Final = 0.7
TRANSITIONS: Final = ("Then", "Later", "Meanwhile", "After a while", "Soon")
FINAL_TRANSITION: Final = "In the end"
# Opening words that read naturally in lower case after a transition.
LOWERABLE: Final = frozenset(
    {"a", "an", "the", "some", "one", "two", "three", "its", "his", "her", "their", "our"}
)


class SceneFailed(GenerationError):
    """A scene of the story could not be made."""


@dataclass(frozen=True, slots=True)
class Scene:
    number: int  # 1-based, in story order
    picture_prompt: str  # what the picture is drawn from
    narration: str  # the line spoken for it


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _beats(prompt: str) -> list[str]:
    sentences = split_sentences(prompt)
    return sentences or [" ".join(prompt.split())]


def _after_transition(transition: str, beat: str) -> str:
    first, _, rest = beat.partition(" ")
    if first.lower() in LOWERABLE:
        first = first.lower()
    return f"{transition}, {first} {rest}".rstrip()


def plan_scenes(prompt: str, count: int, seed: int) -> list[Scene]:
    """The story's scenes in order: each one's picture prompt and narration line."""
    beats = _beats(prompt)
    palette_words = [word for word in _words(prompt) if word in HUE_WORDS]
    digest = hashlib.sha256(f"local-story\x00{prompt}\x00{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    scenes: list[Scene] = []
    if len(beats) >= count:
        # Contiguous groups of sentences, as even as they can be.
        bounds = [round(i * len(beats) / count) for i in range(count + 1)]
        texts = [" ".join(beats[bounds[i] : bounds[i + 1]]) for i in range(count)]
        repeated = [False] * count
    else:
        indices = [i * len(beats) // count for i in range(count)]
        texts = [beats[i] for i in indices]
        repeated = [i > 0 and indices[i] == indices[i - 1] for i in range(count)]
    for index, text in enumerate(texts):
        own_colours = any(word in HUE_WORDS for word in _words(text))
        picture = text if own_colours or not palette_words else f"{text} {' '.join(palette_words)}"
        narration = text
        if repeated[index]:
            last = index == count - 1
            transition = FINAL_TRANSITION if last else str(rng.choice(TRANSITIONS))
            narration = _after_transition(transition, text)
        scenes.append(Scene(index + 1, picture, narration))
    return scenes


def render_scene(
    scene: Scene, seed: int, width: int, height: int, fail: bool, *, stop: threading.Event
) -> bytes:
    """The scene's picture as PNG bytes (run in a worker thread)."""
    if fail:
        raise SceneFailed(f"Scene {scene.number} failed (fail_scene asked for it).")
    return encode(
        render(scene.picture_prompt, seed, width, height, index=scene.number, stop=stop), "png"
    )


def narrate(lines: list[str], seed: int, *, stop: threading.Event) -> tuple[bytes, float]:
    """The lines spoken one after another with a pause between scenes, as WAV bytes, and
    the duration in seconds (run in a worker thread)."""
    pieces: list[NDArray[np.float32]] = []
    rate = 0
    for samples, line_rate in speak_lines(lines, voice=NARRATION_VOICE, stop=stop, seed=seed):
        rate = line_rate
        if len(samples) == 0:
            continue
        if pieces:
            pieces.append(np.zeros(round(SCENE_PAUSE_S * rate), np.float32))
        pieces.append(samples)
    if stop.is_set():
        raise Cancelled()
    if not pieces:
        raise GenerationError("The story has nothing to narrate.")
    audio = np.concatenate(pieces)
    return encode_audio(audio, rate, NARRATION_FORMAT), len(audio) / rate


class LocalStoryProvider(Provider):
    modality = "story"
    description = (
        "A picture per scene of a story on the CPU (procedural art led by each beat of the "
        "prompt), with an optional spoken narration (WAV)."
    )
    price = Price(PriceUnit.SCENE, Decimal(1))

    def input_schema(self) -> dict[str, Any]:
        side = {
            "type": "integer",
            "minimum": MIN_SIDE,
            "maximum": MAX_SIDE,
            "default": DEFAULT_SIDE,
        }
        return prompt_schema(
            {
                "scenes": {
                    "type": "integer",
                    "minimum": MIN_SCENES,
                    "maximum": MAX_SCENES,
                    "default": DEFAULT_SCENES,
                },
                "narrate": {"type": "boolean", "default": False},
                "width": dict(side),
                "height": dict(side),
                "fail_scene": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SCENES,
                    "description": (
                        "Test aid: this scene fails, so partial results can be exercised."
                    ),
                },
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return int(model_input.get("scenes", DEFAULT_SCENES))

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        seed = int(data.get("seed", default_seed(prompt)))
        count = int(data.get("scenes", DEFAULT_SCENES))
        width = int(data.get("width", DEFAULT_SIDE))
        height = int(data.get("height", DEFAULT_SIDE))
        with_narration = bool(data.get("narrate", False))
        fail_scene = data.get("fail_scene")
        pictures_share = PICTURES_SHARE if with_narration else 1.0

        scenes = plan_scenes(prompt, count, seed)
        ctx.progress(0, scenes_completed=0, scenes_total=count)
        made: list[Scene] = []
        failed = False
        for scene in scenes:
            try:
                picture = await ctx.run_cpu(
                    render_scene, scene, seed, width, height, scene.number == fail_scene
                )
            except Cancelled:
                raise
            except Exception as error:
                if not made:
                    raise
                # The story so far is kept: the job ends partial.
                ctx.logger.warning(
                    "scene %d failed: %s",
                    scene.number,
                    error,
                    exc_info=not isinstance(error, GenerationError),
                    extra={"event": "story.scene_failed"},
                )
                failed = True
                break
            await ctx.save_output(picture, "image/png", width=width, height=height)
            made.append(scene)
            ctx.progress(
                100 * pictures_share * len(made) / count,
                scenes_completed=len(made),
                scenes_total=count,
            )
        if with_narration:
            failed = not await self._save_narration(ctx, made, seed) or failed
        return GenerationResult(units=len(made), partial=failed)

    async def _save_narration(self, ctx: GenerationContext, made: list[Scene], seed: int) -> bool:
        """Speak the scenes made; False when the narration failed (the pictures stand)."""
        try:
            audio, duration = await ctx.run_cpu(narrate, [scene.narration for scene in made], seed)
        except Cancelled:
            raise
        except Exception:
            ctx.logger.warning(
                "the narration failed", exc_info=True, extra={"event": "story.narration_failed"}
            )
            return False
        await ctx.save_output(
            audio, AUDIO_CONTENT_TYPES[NARRATION_FORMAT], duration_sec=round(duration, 3)
        )
        return True

    def limits(self) -> dict[str, Any]:
        return {"max_scenes": MAX_SCENES, "narration_voice": NARRATION_VOICE}
