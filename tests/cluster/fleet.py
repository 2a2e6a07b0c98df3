"""A gengate deployment in cluster mode on one machine: an API process
(`gengate serve --no-workers`) and worker processes (`gengate worker`), all on one
PostgreSQL database, as docs/deployment.md describes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.server import GENGATE, TEST_SETTINGS, ServerProcess, write_config

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-whatever, leases and all."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM: stop claiming, finish or hand back running jobs, exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Fleet:
    root: Path
    database_url: str
    settings: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    api: ServerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "gengate.toml"
        values = {**TEST_SETTINGS, "database_url": self.database_url, **self.settings}
        write_config(self.config_path, values, self.models)

    def start_api(self) -> ServerProcess:
        self.api = ServerProcess(data_dir=self.data_dir, config_path=self.config_path)
        self.api.start("--no-workers")
        return self.api

    def start_worker(
        self, *, models: str | None = None, concurrency: int | None = None
    ) -> WorkerProcess:
        args = [
            *GENGATE,
            "worker",
            "--data-dir",
            str(self.data_dir),
            "--config",
            str(self.config_path),
        ]
        if models:
            args += ["--models", models]
        if concurrency:
            args += ["--concurrency", str(concurrency)]
        log_path = self.root / f"worker-{len(self.workers)}-{time.time_ns()}.log"
        # The worker imports test providers from tests/ by path, and gengate from this tree.
        paths = [str(REPO_ROOT / "src"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        env.pop("GENGATE_CONFIG", None)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT
            )
        worker = WorkerProcess(process, log_path)
        self.workers.append(worker)
        return worker

    def replace_worker(self, index: int, *, models: str | None = None) -> WorkerProcess:
        """Kill worker `index` with SIGKILL and start a fresh one in its place."""
        self.workers[index].kill()
        replacement = self.start_worker(models=models)
        self.workers[index] = self.workers.pop()
        return replacement

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()

    def logs(self) -> str:
        parts = [self.api.logs() if self.api else ""]
        parts += [f"--- worker {i}\n{w.logs()}" for i, w in enumerate(self.workers)]
        return "\n".join(parts)
