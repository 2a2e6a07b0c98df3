"""What the benchmarks share: the machine's description, child processes (servers and
workers) with their CPU time, the HTTP load generator's clients, percentiles, and the
printed tables.

Each benchmark script imports this module by name (`import _common`), since the
benchmarks run as scripts from this folder; nothing in gengate imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import orjson

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

HOST = "127.0.0.1"
GENGATE = [sys.executable, "-m", "gengate"]
SUBMIT_PATH = "/v1/models/echo/run"
SUBMIT_BODY = orjson.dumps({"input": {"prompt": "bench"}})
STARTUP_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

#: A table as the report prints it: title, column names, rows of cells.
TableRows = tuple[str, list[str], list[list[str]]]


# -- small helpers ------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def share(part: float, whole: float) -> float | None:
    return rounded(part / whole) if whole > 0 else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def clean_env() -> dict[str, str]:
    """The environment without GENGATE_* variables, so only the benchmark's config counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENGATE_")}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (a cheaper client loop), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def client_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stats_ms(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": rounded(percentile(ordered, 50)),
        "p99_ms": rounded(percentile(ordered, 99)),
        "max_ms": rounded(ordered[-1] if ordered else None),
    }


def utc_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_results(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"results written to {os.path.relpath(out)}")


# -- the machine --------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model"):
                return value.strip()
    return platform.processor() or "unknown"


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_machine(packages: Sequence[str]) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "system": platform.system(),
        "arch": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(packages),
        "loadavg_at_start": load_average(),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- child processes ----------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (NaN where /proc is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait(path: str) -> float:
    """The second field of a schedstat file (ns waiting on a run queue), in seconds."""
    try:
        return int(Path(path).read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (a graceful stop), then SIGKILL when it takes longer than `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def file_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Server:
    """One server process on 127.0.0.1, its log file, and its CPU time."""

    name: str
    description: str
    argv: list[str]
    port: int
    log_path: Path
    api_key: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def start(self) -> None:
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), cwd=REPO
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {STARTUP_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.process)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process, all threads (NaN where /proc is absent)."""
        return math.nan if self.process is None else process_cpu_seconds(self.process.pid)

    def runqueue_wait_seconds(self) -> float:
        """Time the main (event-loop) thread was ready to run but waited for a CPU."""
        if self.process is None:
            return math.nan
        return runqueue_wait(f"/proc/{self.process.pid}/schedstat")

    def log_tail(self, lines: int = 40) -> str:
        return file_tail(self.log_path, lines)


def create_account(where: Sequence[str]) -> dict[str, str]:
    """`gengate accounts create bench` with plenty of credits, against the database that
    `where` (`--data-dir …`, `--config …`) names: its account id, key id and API key."""
    created = subprocess.run(
        [*GENGATE, "accounts", "create", "bench", "--credits", "100000000", "--json", *where],
        capture_output=True,
        env=clean_env(),
        cwd=REPO,
        timeout=180,
        check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(f"account creation failed:\n{created.stderr.decode(errors='replace')}")
    lines = [line for line in created.stdout.decode().splitlines() if line.startswith("{")]
    account: dict[str, str] = json.loads(lines[-1])
    return account


# -- the load generator -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    port: int
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


class Requester(Protocol):
    async def connect(self) -> None: ...

    async def send(self) -> tuple[int, bytes]: ...

    async def reset(self) -> None: ...


class RawRequester:
    """A minimal HTTP/1.1 keep-alive client on one asyncio connection: a prebuilt request,
    a response read by Content-Length. Far cheaper per request than a general client, so
    the load generator stays out of the way of the servers."""

    def __init__(self, target: Target) -> None:
        self.target = target
        lines = [f"{target.method} {target.path} HTTP/1.1", f"Host: {HOST}:{target.port}"]
        lines += [f"{name}: {value}" for name, value in target.headers.items()]
        if target.body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(target.body)}"]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + target.body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.target.port)

    async def send(self) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise ValueError("response without Content-Length")
        end = lower.index(b"\r\n", start + 2)
        body = await self.reader.readexactly(int(lower[start + 17 : end]))
        if b"\r\nconnection: close" in lower:
            await self.reset()
        return status, body

    async def reset(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxRequester:
    """httpx.AsyncClient limited to one keep-alive HTTP/1.1 connection."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.headers = dict(target.headers)
        if target.body:
            self.headers["Content-Type"] = "application/json"
        self.client = self._client()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://{HOST}:{self.target.port}",
            headers=self.headers,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=REQUEST_TIMEOUT_S,
        )

    async def connect(self) -> None:
        return None  # httpx connects on the first request (made during the warm-up)

    async def send(self) -> tuple[int, bytes]:
        content = self.target.body or None
        response = await self.client.request(self.target.method, self.target.path, content=content)
        return response.status_code, response.content

    async def reset(self) -> None:
        await self.client.aclose()
        self.client = self._client()


def make_requester(kind: str, target: Target) -> Requester:
    return RawRequester(target) if kind == "raw" else HttpxRequester(target)


async def submit_pickup_jobs(
    server: Server, count: int, pause_s: float
) -> tuple[list[dict[str, Any]], list[float]]:
    """`count` async echo jobs, one at a time with a pause: their finished records and
    the round-trip time (ms) of each 202 answer."""
    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=REQUEST_TIMEOUT_S
    ) as client:
        ids = []
        round_trips = []
        for n in range(count):
            body = {"input": {"prompt": f"pickup {n}"}, "sync": False}
            started = time.perf_counter()
            response = await client.post(SUBMIT_PATH, json=body)
            round_trips.append((time.perf_counter() - started) * 1000)
            if response.status_code != 202:
                raise RuntimeError(f"async submit answered {response.status_code}")
            ids.append(response.json()["id"])
            await asyncio.sleep(pause_s)
        records = []
        for job_id in ids:
            for _ in range(200):
                record = (await client.get(f"/v1/jobs/{job_id}")).json()
                if record["completed_at"] is not None:
                    break
                await asyncio.sleep(0.05)
            records.append(record)
        return records, round_trips


# -- output -------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def print_tables(
    header: str, tables: Sequence[TableRows], notes: Sequence[str], left: Collection[str]
) -> None:
    """The tables with rich when it is installed (columns named in `left` aligned left,
    the rest right), else tab-separated; then the notes as a list."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(header)
        for title, columns, rows in tables:
            print(f"\n{title}\n" + "\t".join(columns))
            for row in rows:
                print("\t".join(row))
        print("\n" + "\n".join(f"- {n}" for n in notes))
        return
    # Wide enough for the tables when the output is a file or a pipe.
    console = Console() if sys.stdout.isatty() else Console(width=132)
    console.print(header)
    for title, columns, rows in tables:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="left" if column in left else "right", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in notes:
        console.print(f"- {note}", highlight=False)
