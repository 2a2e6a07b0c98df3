"""Webhook delivery benchmark: deliveries per second, and the latency a webhook adds
after its job finishes.

    python benchmarks/webhooks.py [--quick] [--out benchmarks/results/webhooks.json]

A real `gengate serve` process on 127.0.0.1 (SQLite, the echo model, private targets
allowed) delivers to a receiver that runs in this process, on its own thread and event
loop, answering every request with 200 at once and noting when each arrived.

1. **Throughput.** With delivery paused (`webhooks_deliver = false`) the server runs N
   echo jobs, so N messages wait in the outbox. The server is restarted with delivery
   on, and the receiver times the backlog: deliveries/s = (N - 1) / (last - first
   arrival). This is the delivery loop alone, not the job pipeline.
2. **Latency, idle.** Jobs submitted one at a time (sync) with a pause between them:
   for each, the receiver's arrival time minus the job's `completed_at`.
3. **Latency, loaded.** The same with many clients submitting at once.

Prints a table and writes the numbers, the settings and the machine as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import HOST, free_port, log, percentile

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = BENCH_DIR / "results" / "webhooks.json"
GENGATE = [sys.executable, "-m", "gengate"]
STARTUP_TIMEOUT_S = 90.0


# -- the receiver ----------------------------------------------------------------------------


@dataclass
class Arrival:
    at: float  # time.time() when the request was read
    webhook_id: str
    body: bytes


@dataclass
class BenchReceiver:
    """A minimal HTTP/1.1 receiver on its own thread: reads one request per connection,
    answers 200, notes the arrival. Kept lean so that it is not what is measured."""

    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._handle, HOST, self.port))
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            arrival = Arrival(time.time(), headers.get(b"webhook-id", b"").decode(), body)
            with self._lock:
                self.arrivals.append(arrival)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def snapshot(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count()} of {count} webhooks after {timeout_s} s")
            time.sleep(0.01)


# -- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config(self) -> Path:
        return self.workdir / "gengate.toml"

    def configure(self, *, deliver: bool) -> None:
        self.config.write_text(
            "\n".join(
                [
                    'rate_limit = "off"',
                    "access_log = false",
                    'log_level = "WARNING"',
                    "webhooks_allow_private = true",
                    f"webhooks_deliver = {'true' if deliver else 'false'}",
                    "[models.echo]",
                    "sync_window_s = 30",
                    "concurrency = 64",
                    "queue_depth = 100000",
                ]
            )
            + "\n"
        )

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [
                *GENGATE,
                *args,
                "--data-dir",
                str(self.workdir / "data"),
                "--config",
                str(self.config),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=clean_env(),
            timeout=120,
        )
        return result.stdout

    def start(self) -> None:
        log_file = (self.workdir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *GENGATE,
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.workdir / "data"),
                "--config",
                str(self.config),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the server exited; see " + str(self.workdir / "server.log"))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def clean_env() -> dict[str, str]:
    """The environment without GENGATE_* variables, so only the benchmark's config counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}


# -- the measurements ------------------------------------------------------------------------


async def submit_many(
    server: Server, api_key: str, url: str, count: int, clients: int, *, sync: bool
) -> list[dict[str, Any]]:
    """`count` echo jobs with a webhook, from `clients` concurrent clients."""
    jobs: list[dict[str, Any]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    body = {"input": {"prompt": "bench"}, "webhook_url": url, "sync": sync}
    headers = {"Authorization": f"Bearer {api_key}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                answer = await http.post("/v1/models/echo/run", json=body)
                answer.raise_for_status()
                jobs.append(answer.json())

    await asyncio.gather(*(client() for _ in range(clients)))
    return jobs


def wait_until_idle(server: Server, api_key: str, timeout_s: float) -> None:
    """Until no job is queued or running."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key}"}) as http:
        while time.monotonic() < deadline:
            busy = [
                http.get("/v1/jobs", params={"status": status, "limit": 1}).json()["jobs"]
                for status in ("queued", "running")
            ]
            if not any(busy):
                return
            time.sleep(0.1)
    raise TimeoutError("jobs still running")


def throughput(server: Server, receiver: BenchReceiver, api_key: str, count: int) -> dict[str, Any]:
    log(f"throughput: {count} jobs with delivery paused")
    server.configure(deliver=False)
    server.start()
    asyncio.run(submit_many(server, api_key, receiver.url, count, 16, sync=False))
    wait_until_idle(server, api_key, timeout_s=600)
    server.stop()
    log("throughput: restarting with delivery on")
    server.configure(deliver=True)
    before = receiver.count()
    server.start()
    receiver.wait_for(before + 1, timeout_s=600)
    cpu_first = server.cpu_seconds()
    receiver.wait_for(before + count, timeout_s=600)
    cpu_last = server.cpu_seconds()
    arrivals = receiver.snapshot()[before:]
    first, last = arrivals[0].at, arrivals[-1].at
    unique = len({a.webhook_id for a in arrivals})
    return {
        "messages": count,
        "delivered": len(arrivals),
        "unique_webhook_ids": unique,
        "seconds": round(last - first, 3),
        "deliveries_per_s": round((count - 1) / (last - first), 1) if last > first else None,
        # On a shared machine this moves far less than deliveries/s does.
        "server_cpu_ms_per_delivery": round((cpu_last - cpu_first) * 1000 / (count - 1), 2),
    }


def latencies(
    server: Server, receiver: BenchReceiver, api_key: str, count: int, clients: int
) -> dict[str, Any]:
    before = receiver.count()
    if clients == 1:
        jobs = []
        for _ in range(count):
            jobs += asyncio.run(submit_many(server, api_key, receiver.url, 1, 1, sync=True))
            time.sleep(0.02)
    else:
        jobs = asyncio.run(submit_many(server, api_key, receiver.url, count, clients, sync=True))
    receiver.wait_for(before + count, timeout_s=300)
    completed = {
        job["id"]: datetime.fromisoformat(job["completed_at"].replace("Z", "+00:00")).timestamp()
        for job in jobs
    }
    samples = []
    for arrival in receiver.snapshot()[before:]:
        job_id = orjson.loads(arrival.body)["data"]["id"]
        samples.append((arrival.at - completed[job_id]) * 1000)
    samples.sort()
    return {
        "jobs": count,
        "clients": clients,
        "p50_ms": round(percentile(samples, 50) or 0, 1),
        "p99_ms": round(percentile(samples, 99) or 0, 1),
        "max_ms": round(samples[-1], 1),
        "mean_ms": round(sum(samples) / len(samples), 1),
    }


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "system": platform.system(),
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs (~1 min)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    backlog, idle_jobs, loaded_jobs = (300, 50, 200) if args.quick else (2000, 200, 1000)

    receiver = BenchReceiver()
    receiver.start()
    with tempfile.TemporaryDirectory(prefix="gengate-webhooks-bench-") as tmp:
        server = Server(Path(tmp))
        server.configure(deliver=False)
        created = json.loads(
            server.cli("accounts", "create", "bench", "--credits", "100000000", "--json")
        )
        api_key = created["api_key"]
        try:
            result_throughput = throughput(server, receiver, api_key, backlog)
            log(f"latency: {idle_jobs} jobs one at a time")
            idle = latencies(server, receiver, api_key, idle_jobs, 1)
            log(f"latency: {loaded_jobs} jobs from 16 clients")
            loaded = latencies(server, receiver, api_key, loaded_jobs, 16)
        finally:
            server.stop()
            receiver.stop()

    report = {
        "benchmark": "webhooks",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "setup": {
            "database": "sqlite",
            "server": "one gengate serve process, webhooks_concurrency 32 (default)",
            "receiver": "in the benchmark process, own thread, answers 200 at once",
        },
        "machine": machine(),
        "throughput": result_throughput,
        "latency": {"idle": idle, "loaded": loaded},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"{'measure':<52}{'value':>10}")
    cpu = result_throughput["server_cpu_ms_per_delivery"]
    print(f"{'server CPU ms per delivery':<52}{cpu:>10}")
    print(
        f"{'deliveries/s (backlog of ' + str(backlog) + ')':<52}"
        f"{result_throughput['deliveries_per_s']:>10}"
    )
    for name, row in (("idle, 1 client", idle), ("loaded, 16 clients", loaded)):
        print(f"{'completion → receipt p50 ms (' + name + ')':<52}{row['p50_ms']:>10}")
        print(f"{'completion → receipt p99 ms (' + name + ')':<52}{row['p99_ms']:>10}")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
