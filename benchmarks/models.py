"""Built-in model benchmark: how long each local model takes for its output.

    python benchmarks/models.py [--quick] [--only local-video,local-music] [--repeat N]
                                [--out benchmarks/results/models.json]

Each case runs one model's provider on one input, in this process, the way a worker
runs it: `generate(ctx)` with the heavy work in a thread through `ctx.run_cpu`. The
context here keeps outputs in memory and ignores progress, so the numbers are the
model's own time, without the database, the queue or file storage.

Reported per case: wall time (the best of `--repeat` runs, and the median), the CPU
time the process used meanwhile (all threads), the output's size and, for audio and
video, its duration and the real-time factor (wall time / output duration; below 1 is
faster than real time).

Cases live in `CASES`: add a `Case` for a new model (its id, a label, the input, and
whether it is a "default" or a "largest" size). `--quick` runs only the default sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gengate.config import ModelConfig
from gengate.domain.ids import format_id, new_uuid
from gengate.providers.base import SavedOutput
from gengate.providers.registry import BUILTIN_PROVIDERS, Model

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "models.json"

LONG_TEXT = " ".join(
    [
        "Gengate queues each generation, runs it on a model, and keeps the files it makes.",
        "A client submits a job, polls it or waits for a webhook, and downloads the result.",
        "Credits are reserved when the job is submitted and charged when it succeeds.",
        "Nothing is charged for a job that fails or is cancelled.",
    ]
    * 20
)[:5000]
LYRICS = "\n".join(["Out on the open road", "We sing into the night"] * 12)
STORY = (
    "A small fox wakes in a green forest. The fox follows a cold river to the sea. "
    "A storm rolls over the dark water. At dawn the fox sleeps under a pink sky."
)


@dataclass(frozen=True, slots=True)
class Case:
    model: str  # a built-in model id
    label: str
    input: dict[str, Any]
    size: str = "default"  # "default" or "largest"


CASES: list[Case] = [
    Case("local-video", "default (640x360, 4 s, 24 fps)", {"prompt": "a storm over the sea"}),
    Case(
        "local-video",
        "720p (1280x720, 5 s, 24 fps)",
        {"prompt": "a storm over the sea", "width": 1280, "height": 720, "duration": 5},
    ),
    Case(
        "local-video",
        "largest (1920x1920, 20 s, 30 fps)",
        {
            "prompt": "a storm over the sea",
            "width": 1920,
            "height": 1920,
            "duration": 20,
            "fps": 30,
        },
        size="largest",
    ),
    Case("local-music", "default (10 s, wav)", {"prompt": "a happy summer dance"}),
    Case(
        "local-music",
        "largest (120 s, lyrics, mp3)",
        {
            "prompt": "a happy summer dance",
            "duration": 120,
            "is_instrumental": False,
            "lyrics": LYRICS,
            "format": "mp3",
        },
        size="largest",
    ),
    Case(
        "local-voice",
        "default (joe, 166 chars, wav)",
        {"text": LONG_TEXT[:166]},
    ),
    Case(
        "local-voice",
        "largest (joe, 5000 chars, mp3)",
        {"text": LONG_TEXT, "format": "mp3"},
        size="largest",
    ),
    Case(
        "local-voice",
        "largest (espeak, 5000 chars, mp3)",
        {"text": LONG_TEXT, "voice": "espeak", "format": "mp3"},
        size="largest",
    ),
    Case("local-3d", "default (creature, detail 3)", {"prompt": "a friendly creature"}),
    Case(
        "local-3d",
        "largest (creature, detail 5)",
        {"prompt": "a friendly creature", "detail": 5},
        size="largest",
    ),
    Case("local-story", "default (4 scenes, 512x512)", {"prompt": STORY}),
    Case(
        "local-story",
        "largest (12 scenes, 2048x2048, narrated)",
        {"prompt": STORY, "scenes": 12, "width": 2048, "height": 2048, "narrate": True},
        size="largest",
    ),
]


class BenchContext:
    """A `GenerationContext` that keeps outputs in memory and ignores progress."""

    def __init__(self, model_input: Mapping[str, Any]) -> None:
        self.job_id = format_id("job", new_uuid())
        self.input = dict(model_input)
        self.attempt = 1
        self.cancelled = asyncio.Event()
        self.logger = logging.LoggerAdapter(logging.getLogger("bench"), {})
        self.stop = threading.Event()
        self.outputs: list[tuple[SavedOutput, bytes]] = []

    def progress(
        self,
        percent: float,
        *,
        scenes_completed: int | None = None,
        scenes_total: int | None = None,
    ) -> None:
        return None

    async def save_output(
        self,
        data: bytes,
        content_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        duration_sec: float | None = None,
    ) -> SavedOutput:
        saved = SavedOutput(
            format_id("out", new_uuid()),
            f"bench/{len(self.outputs)}",
            content_type,
            len(data),
            width,
            height,
            duration_sec,
        )
        self.outputs.append((saved, data))
        return saved

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args, stop=self.stop)


@dataclass
class Result:
    model: str
    label: str
    size: str
    input: dict[str, Any]
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    outputs: int = 0
    bytes: int = 0
    content_type: str = ""
    duration_s: float | None = None
    units: float = 0.0

    @property
    def best_s(self) -> float:
        return min(self.wall_s)

    @property
    def realtime_factor(self) -> float | None:
        return self.best_s / self.duration_s if self.duration_s else None

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "best_wall_s": round(self.best_s, 3),
            "median_wall_s": round(statistics.median(self.wall_s), 3),
            "realtime_factor": (
                round(self.realtime_factor, 3) if self.realtime_factor is not None else None
            ),
        }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


async def run_case(case: Case, repeat: int) -> Result:
    model = Model(case.model, BUILTIN_PROVIDERS[case.model](), ModelConfig(), 1)
    model_input = model.validate_input(dict(case.input))
    result = Result(case.model, case.label, case.size, case.input)
    for _ in range(repeat):
        ctx = BenchContext(model_input)
        began_wall, began_cpu = time.perf_counter(), _cpu_seconds()
        generated = await model.provider.generate(ctx)
        result.wall_s.append(time.perf_counter() - began_wall)
        result.cpu_s.append(_cpu_seconds() - began_cpu)
        first = ctx.outputs[0][0]
        result.outputs = len(ctx.outputs)
        result.bytes = sum(saved.bytes for saved, _ in ctx.outputs)
        result.content_type = first.content_type
        result.duration_s = first.duration_sec
        result.units = generated.units
    return result


def _machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("gengate", "numpy", "av", "onnxruntime", "piper-tts", "espeakng-loader"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average": os.getloadavg(),
    }


def print_table(results: list[Result]) -> None:
    header = (
        f"{'model':<12} {'case':<36} {'wall s':>8} {'cpu s':>7} {'out s':>7} {'x real':>7} "
        f"{'bytes':>11}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        duration = f"{result.duration_s:.2f}" if result.duration_s else "-"
        factor = f"{result.realtime_factor:.2f}" if result.realtime_factor is not None else "-"
        print(
            f"{result.model:<12} {result.label:<36} {result.best_s:>8.2f} "
            f"{min(result.cpu_s):>7.2f} {duration:>7} {factor:>7} {result.bytes:>11,}"
        )
    print("x real: wall time / output duration (below 1 is faster than real time)")


async def main_async(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else None
    cases = [
        case
        for case in CASES
        if (only is None or case.model in only) and (not args.quick or case.size == "default")
    ]
    machine = _machine()
    results: list[Result] = []
    for case in cases:
        print(f"running {case.model}: {case.label} …", file=sys.stderr, flush=True)
        results.append(await run_case(case, args.repeat))
    machine["load_average_end"] = os.getloadavg()
    print_table(results)
    report = {
        "benchmark": "models",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "repeat": args.repeat,
        "quick": args.quick,
        "cases": [result.summary() for result in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="default sizes only")
    parser.add_argument("--only", default="", help="comma-separated model ids")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (best is kept)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
