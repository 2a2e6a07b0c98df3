"""Cluster-mode benchmark on PostgreSQL: gengate's API and worker processes on one database,
its queue drained without HTTP, and the same drain through PgQueuer, in one run.

    python benchmarks/cluster.py [--quick] [--jobs N] [--skip-pgqueuer]
                                 [--parts e2e,pickup,drain,profile,pgqueuer]
                                 [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
                                 [--out benchmarks/results/cluster.json]

Every part gets a fresh database on the PostgreSQL server (a copy of one migrated template
database holding a funded `bench` account); all of them are dropped at the end. Processes
are started as in a deployment (docs/deployment.md): `gengate serve --no-workers` for the
API and `gengate worker --models echo` for the workers, with `rate_limit = "off"` and
`access_log = false`, everything else at its default.

1. **e2e**: one API process and 1, 2 and 4 worker processes. N clients, each on its own
   keep-alive connection, submit a fixed number of `echo` jobs (`sync: false`, latency 0)
   back to back. Submit rate (202 answers/s), completion rate (jobs/s from the first
   submit to the last job terminal, polled in the database and taken from its
   timestamps), and submit → succeeded latency p50/p99 from the jobs' own
   `created_at → completed_at`.
2. **pickup**: one API process and one worker, idle; `sync: false` jobs one at a time with
   a pause; `started_at - created_at` as the database stores them.
3. **drain**: N queued `echo` jobs, then K worker processes (K = 1, 2), and an in-process
   `WorkerRuntime`, timed from the first claim to the last job terminal (claim, run,
   settlement of the money, the job's terminal write). The queue is filled by one real
   submit (the submit service, in this process) copied N - 1 times in SQL: jobs, their
   `reserve` ledger entries, the account's reservation and the fair-share tag exactly as
   N submits by one account would leave them (see `seed_queue`). `--seed submit` runs
   the submit service N times instead (slow: a few hundred per second).
4. **profile**: an in-process drain under cProfile, and the per-job counters of a drain:
   SQL statements, transactions, log lines, files, CPU of the event loop, of the file
   threads and of PostgreSQL.
5. **pgqueuer**: the same drain through PgQueuer (pinned below, installed into a separate
   virtual environment, `benchmarks/.venv-pgqueuer`, never the project's), run by
   `benchmarks/pgqueuer_drain.py` with that environment's python: N no-op jobs, drained
   with batched dequeues. gengate / PgQueuer ratios.

`python benchmarks/cluster.py inprocess-drain …` is the child process of parts 3 and 4.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from _common import (
    BENCH_DIR,
    GENGATE,
    REPO,
    REQUEST_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    SUBMIT_BODY,
    SUBMIT_PATH,
    RawRequester,
    Server,
    TableRows,
    Target,
    clean_env,
    create_account,
    describe_machine,
    file_tail,
    fmt,
    free_port,
    load_average,
    log,
    parse_time,
    percentile,
    print_tables,
    process_cpu_seconds,
    rounded,
    run_async,
    runqueue_wait,
    stats_ms,
    stop_process,
    submit_pickup_jobs,
    utc_stamp,
    write_results,
)

THIS_SCRIPT = Path(__file__).resolve()
DEFAULT_OUT = REPO / "benchmarks" / "results" / "cluster.json"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PGQUEUER_VENV = BENCH_DIR / ".venv-pgqueuer"
PGQUEUER_DRIVER = BENCH_DIR / "pgqueuer_drain.py"
#: PgQueuer and every package it pulls in, pinned, so its venv is the same on every run.
PGQUEUER_REQUIREMENTS = (
    "pgqueuer==1.6.0",
    "asyncpg==0.32.0",
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "croniter==7.0.0",
    "idna==3.20",
    "markdown-it-py==4.3.0",
    "mdurl==0.1.2",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "pydantic-settings==2.16.3",
    "pygments==2.21.0",
    "python-dateutil==4.0.0",
    "python-dotenv==1.2.4",
    "rich==15.0.0",
    "shellingham==1.5.4",
    "tabulate==0.10.0",
    "typer==0.29.2",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
    "tzdata==2026.6",
    "uvloop==0.23.0",
)
PACKAGES = (
    "gengate",
    "sqlalchemy",
    "asyncpg",
    "fastapi",
    "starlette",
    "uvicorn",
    "orjson",
    "uvloop",
    "httptools",
)
PARTS = ("e2e", "pickup", "drain", "profile", "pgqueuer")

MODEL = "echo"
ASYNC_SUBMIT_BODY = orjson.dumps({"input": {"prompt": "bench"}, "sync": False})
WARMUP_JOBS = 10
POLL_INTERVAL_S = 0.05
PICKUP_TARGET_MS = 3.0
ACTIVE = ("queued", "running")
TOP_FUNCTIONS = 20
TOP_GENGATE = 12


@dataclass(frozen=True)
class Profile:
    e2e_jobs: int
    clients: int
    worker_counts: tuple[int, ...]
    pickup_jobs: int
    pickup_pause_s: float
    drain_jobs: int
    drain_workers: tuple[int, ...]
    profile_jobs: int
    pgqueuer_repeats: int


FULL = Profile(
    e2e_jobs=2_000,
    clients=16,
    worker_counts=(1, 2, 4),
    pickup_jobs=200,
    pickup_pause_s=0.1,
    drain_jobs=10_000,
    drain_workers=(1, 2),
    profile_jobs=2_000,
    pgqueuer_repeats=3,
)
QUICK = Profile(
    e2e_jobs=400,
    clients=8,
    worker_counts=(1, 2, 4),
    pickup_jobs=40,
    pickup_pause_s=0.05,
    drain_jobs=2_000,
    drain_workers=(1, 2),
    profile_jobs=1_000,
    pgqueuer_repeats=1,
)


@dataclass(frozen=True)
class PgQueuerConfig:
    label: str
    consumers: int
    batch_size: int
    loop: str


#: The first is PgQueuer's own drain benchmark's shape (5 consumers, batches of 10,
#: uvloop): the reference the ratios use. The others show what its numbers depend on.
PGQUEUER_CONFIGS = (
    PgQueuerConfig("5 consumers, batches of 10, uvloop (reference)", 5, 10, "uvloop"),
    PgQueuerConfig("1 consumer, batches of 10, uvloop", 1, 10, "uvloop"),
    PgQueuerConfig("5 consumers, batches of 10, asyncio", 5, 10, "asyncio"),
)


# -- PostgreSQL: databases, counters, the server's CPU ------------------------------------


class Databases:
    """This run's databases on one PostgreSQL server, created fresh, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.prefix = f"gg_bench_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def url(self, name: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{name}"

    async def create(self, label: str, template: str | None = None) -> str:
        name = f"{self.prefix}_{label}"
        statement = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        deadline = time.monotonic() + 30
        while True:
            admin = await asyncpg.connect(self.admin_url, timeout=10)
            try:
                await admin.execute(statement)
                break
            except asyncpg.ObjectInUseError:
                # A session of the template is still closing (a CLI that just exited).
                if time.monotonic() > deadline:
                    raise
            finally:
                await admin.close()
            await asyncio.sleep(0.2)
        self.created.append(name)
        return name

    async def drop_all(self) -> None:
        admin = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            for name in reversed(self.created):
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        self.created.clear()


async def describe_postgres(admin_url: str) -> dict[str, Any]:
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        found: dict[str, Any] = {"version": await admin.fetchval("SELECT version()")}
        for setting in (
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_level",
            "shared_buffers",
            "max_connections",
        ):
            found[setting] = await admin.fetchval(f"SHOW {setting}")
        found["postmaster_pid"] = postmaster_pid(await admin.fetchval("SHOW data_directory"))
        return found
    finally:
        await admin.close()


def postmaster_pid(data_directory: str) -> int | None:
    """The server's main process, from its pid file (readable when we run as root or as
    the server's user; otherwise the server's CPU is not reported)."""
    try:
        return int(Path(data_directory, "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def postgres_cpu_seconds(postmaster: int | None) -> float:
    """CPU time of the PostgreSQL server: the postmaster, its live children (backends,
    WAL writer, checkpointer…), and the children it already reaped (their time is added
    to its `cutime`/`cstime`), so backends that came and went are counted too. Every
    database on the server counts, not just ours."""
    if postmaster is None:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        if pid == postmaster:
            total += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


BACKENDS = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class PostgresWatch:
    """While open: the CPU time of the PostgreSQL backends that serve one database (read
    from /proc every POLL_INTERVAL_S, so a backend's last moments before it exits are
    missed), the whole server's CPU time (every database, the WAL writer, the
    checkpointer), and the most connections the database had at once (this watch's own
    and `exclude`'s not counted)."""

    def __init__(
        self, database_url: str, postmaster: int | None, exclude: Sequence[int] = ()
    ) -> None:
        self.database_url = database_url
        self.postmaster = postmaster
        self.exclude = set(exclude)
        self.peak_connections = 0
        self.server_cpu = math.nan
        self._baseline: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._server_before = math.nan
        self._stop = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PostgresWatch:
        self._conn = await asyncpg.connect(self.database_url)
        self._server_before = postgres_cpu_seconds(self.postmaster)
        await self._sample(initial=True)
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._conn is not None and self._task is not None
        self._stop.set()
        try:
            await self._task
            await self._sample()
        finally:
            self.server_cpu = postgres_cpu_seconds(self.postmaster) - self._server_before
            await self._conn.close()

    @property
    def backends_cpu(self) -> float:
        if not self._last:
            return math.nan
        return sum(self._last[pid] - self._baseline[pid] for pid in self._last)

    async def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL_INTERVAL_S)
            await self._sample()

    async def _sample(self, *, initial: bool = False) -> None:
        assert self._conn is not None
        pids = [int(row["pid"]) for row in await self._conn.fetch(BACKENDS)]
        pids = [pid for pid in pids if pid not in self.exclude]
        self.peak_connections = max(self.peak_connections, len(pids))
        for pid in pids:
            cpu = process_cpu_seconds(pid)
            if math.isnan(cpu):
                continue
            # A backend first seen later was started during the watch: from zero.
            self._baseline.setdefault(pid, cpu if initial else 0.0)
            self._last[pid] = cpu

    def per_job(self, jobs: int) -> dict[str, Any]:
        return {
            "postgres_cpu_us_per_job": cpu_us(self.backends_cpu, jobs),
            "postgres_server_cpu_us_per_job": cpu_us(self.server_cpu, jobs),
            "peak_connections": self.peak_connections,
        }


def cpu_us(seconds: float, jobs: int) -> float | None:
    return rounded(seconds / jobs * 1e6, 1) if jobs else None


DATABASE_COUNTERS = (
    "xact_commit",
    "xact_rollback",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "tup_fetched",
)


async def database_counters(admin_url: str, database: str) -> dict[str, int]:
    """The database's activity counters, plus the server's WAL counters (all databases)."""
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        row = await admin.fetchrow(
            f"SELECT {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database WHERE datname = $1",
            database,
        )
        wal = await admin.fetchrow("SELECT wal_records, wal_bytes, wal_sync FROM pg_stat_wal")
    finally:
        await admin.close()
    counters = {name: int(row[name]) for name in DATABASE_COUNTERS} if row else {}
    if wal is not None:
        counters |= {f"server_{name}": int(wal[name]) for name in wal.keys()}  # noqa: SIM118
    return counters


async def settled_counters(admin_url: str, database: str) -> dict[str, int]:
    # Backends report their counters when they end, or at most once a second while they
    # run: read them once the processes are gone and a moment has passed.
    await asyncio.sleep(1.2)
    return await database_counters(admin_url, database)


def per_job(before: dict[str, int], after: dict[str, int], jobs: int) -> dict[str, float | None]:
    return {
        name: rounded((after[name] - before[name]) / jobs, 2) if jobs else None
        for name in after
        if name in before
    }


# -- a deployment: database, config, API and worker processes -----------------------------


@dataclass
class WorkerProcess:
    """`gengate worker --models echo`, its log, and its CPU time."""

    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    cpu_at_start: float = math.nan

    def launch(self) -> None:
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), cwd=REPO
            )

    def has_started(self) -> bool:
        """True once the worker logged that it runs (its claim loops are going)."""
        assert self.process is not None
        try:
            started = b'"worker.start"' in self.log_path.read_bytes()
        except OSError:
            started = False
        if not started and self.process.poll() is not None:
            raise RuntimeError(f"a worker exited at start:\n{file_tail(self.log_path)}")
        return started

    def cpu_seconds(self) -> float:
        return math.nan if self.process is None else process_cpu_seconds(self.process.pid)

    def runqueue_wait_seconds(self) -> float:
        if self.process is None:
            return math.nan
        return runqueue_wait(f"/proc/{self.process.pid}/schedstat")

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class Deployment:
    """One database of this run, its config and data dir, and the processes on it."""

    root: Path
    database: str
    database_url: str
    account: dict[str, str]
    queue_depth: int
    api: Server | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = self.root / "gengate.toml"
        write_config(self.config, self.database_url, self.queue_depth)

    @property
    def where(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--config", str(self.config)]

    def start_api(self) -> Server:
        port = free_port()
        self.api = Server(
            name="api",
            description="gengate serve --no-workers",
            argv=[*GENGATE, "serve", "--no-workers", "--port", str(port), *self.where],
            port=port,
            log_path=self.root / "api.log",
            api_key=self.account["api_key"],
        )
        self.api.start()
        return self.api

    def launch_workers(self, count: int) -> list[WorkerProcess]:
        launched = []
        for _ in range(count):
            worker = WorkerProcess(
                argv=[*GENGATE, "worker", "--models", MODEL, *self.where],
                log_path=self.root / f"worker-{len(self.workers)}.log",
            )
            worker.launch()
            self.workers.append(worker)
            launched.append(worker)
        return launched

    async def wait_started(self, workers: list[WorkerProcess]) -> None:
        """Wait until every worker runs; note each one's CPU time at that moment, so its
        start-up (imports, connecting) is left out of its CPU per job."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        waiting = list(workers)
        while waiting:
            for worker in list(waiting):
                if worker.has_started():
                    worker.cpu_at_start = worker.cpu_seconds()
                    waiting.remove(worker)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} worker(s) not started in time")
            await asyncio.sleep(0.01)

    def check_running(self) -> None:
        """Raise when a process of the deployment died (rather than wait for its jobs)."""
        processes = [(w.process, w.log_path) for w in self.workers]
        if self.api is not None:
            processes.append((self.api.process, self.api.log_path))
        for process, log_path in processes:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"a gengate process exited:\n{file_tail(log_path)}")

    def workers_cpu_since_start(self) -> float:
        return sum(w.cpu_seconds() - w.cpu_at_start for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.api is not None:
            self.api.stop()


def write_config(path: Path, database_url: str, queue_depth: int) -> None:
    path.write_text(
        f'database_url = "{database_url}"\n'
        'rate_limit = "off"\n'
        "access_log = false\n"
        f"\n[models.{MODEL}]\n"
        f"queue_depth = {queue_depth}\n"
    )


@dataclass
class Run:
    """What the parts share: the sizes, the temp folder, the databases, the template."""

    profile: Profile
    root: Path
    databases: Databases
    postgres: dict[str, Any]
    seed_method: str
    keep_profile: Path | None = None
    template: str = ""
    account: dict[str, str] = field(default_factory=dict)

    @property
    def postmaster(self) -> int | None:
        pid = self.postgres.get("postmaster_pid")
        return pid if isinstance(pid, int) else None

    @property
    def queue_depth(self) -> int:
        # The default depth (10,000) unless a drain needs more room.
        return max(10_000, self.profile.drain_jobs)

    async def prepare_template(self) -> None:
        """A migrated database with a funded account, which every part copies."""
        self.template = await self.databases.create("template")
        home = self.root / "template"
        home.mkdir()
        config = home / "gengate.toml"
        write_config(config, self.databases.url(self.template), self.queue_depth)
        self.account = create_account(["--data-dir", str(home / "data"), "--config", str(config)])

    async def deployment(self, label: str) -> Deployment:
        name = await self.databases.create(label, template=self.template)
        return Deployment(
            root=self.root / label,
            database=name,
            database_url=self.databases.url(name),
            account=self.account,
            queue_depth=self.queue_depth,
        )


# -- waiting for the queue ------------------------------------------------------------------

ACTIVE_COUNT = "SELECT count(*) FROM jobs WHERE status = ANY($1::text[])"


@dataclass
class Progress:
    done_at: float = math.nan
    polls: int = 0


async def wait_until_idle(
    conn: asyncpg.Connection,
    ready: Callable[[], bool],
    timeout_s: float,
    check: Callable[[], None] | None = None,
) -> Progress:
    """Poll until `ready()` (e.g. every submit answered) and no job is queued or running;
    `check` runs before each poll and raises when waiting longer is pointless."""
    progress = Progress()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if check is not None:
            check()
        active = await conn.fetchval(ACTIVE_COUNT, list(ACTIVE))
        progress.polls += 1
        if ready() and active == 0:
            progress.done_at = time.perf_counter()
            return progress
        await asyncio.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"jobs still queued or running after {timeout_s:.0f} s")


def drain_timeout_s(jobs: int) -> float:
    # Generous (a few dozen jobs per second would still finish), yet it ends.
    return 120 + jobs / 25


def ms_between(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds() * 1000


# -- 1. end to end over HTTP ----------------------------------------------------------------


@dataclass
class Submits:
    ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    began: float = math.nan
    ended: float = math.nan
    finished: bool = False


async def submit_async_jobs(api: Server, jobs: int, clients: int, into: Submits) -> None:
    """`jobs` async submits from `clients` keep-alive connections, back to back."""
    target = Target(api.port, "POST", SUBMIT_PATH, ASYNC_SUBMIT_BODY, api.headers)
    requesters = [RawRequester(target) for _ in range(clients)]
    await asyncio.gather(*(r.connect() for r in requesters))
    remaining = jobs

    async def client(requester: RawRequester) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(requester.send(), REQUEST_TIMEOUT_S)
            except Exception as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}".encode()
                await requester.reset()
            if status == 202:
                into.latencies.append(time.perf_counter() - started)
                into.ids.append(str(orjson.loads(body)["id"]))
            else:
                into.errors += 1
                if len(into.samples) < 3:
                    into.samples.append(f"HTTP {status}: {body[:200]!r}")

    into.began = time.perf_counter()
    try:
        await asyncio.gather(*(client(r) for r in requesters))
    finally:
        into.ended = time.perf_counter()
        into.finished = True
        await asyncio.gather(*(r.reset() for r in requesters))


def warm_up(api: Server, count: int) -> None:
    """A few sync submits: every process has connected and run an echo job."""
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=REQUEST_TIMEOUT_S) as client:
        for _ in range(count):
            answer = client.post(
                SUBMIT_PATH, content=SUBMIT_BODY, headers={"Content-Type": "application/json"}
            )
            if answer.status_code != 200 or answer.json().get("status") != "succeeded":
                raise RuntimeError(f"warm-up submit answered {answer.status_code}: {answer.text}")


@dataclass(frozen=True)
class Snapshot:
    wall: float
    api_cpu: float
    workers_cpu: float
    workers_waited: float

    @classmethod
    def take(cls, deployment: Deployment) -> Snapshot:
        return cls(
            wall=time.perf_counter(),
            api_cpu=deployment.api.cpu_seconds() if deployment.api else math.nan,
            workers_cpu=deployment.workers_cpu_since_start(),
            workers_waited=sum(w.runqueue_wait_seconds() for w in deployment.workers),
        )


async def idle_cpu(deployment: Deployment, seconds: float = 2.0) -> dict[str, float | None]:
    """Each process's CPU use while no job comes (its background loops: heartbeats,
    sweeps, the relay), as a share of one core."""
    processes: dict[str, Callable[[], float]] = {}
    if deployment.api is not None:
        processes["api"] = deployment.api.cpu_seconds
    for index, worker in enumerate(deployment.workers):
        processes[f"worker{index}"] = worker.cpu_seconds
    before = {name: read() for name, read in processes.items()}
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - started
    return {name: rounded((read() - before[name]) / wall) for name, read in processes.items()}


async def e2e_cell(run: Run, workers: int) -> dict[str, Any]:
    profile = run.profile
    deployment = await run.deployment(f"e2e{workers}")
    loadavg_before = load_average()
    try:
        api = deployment.start_api()
        await deployment.wait_started(deployment.launch_workers(workers))
        warm_up(api, WARMUP_JOBS)
        idle = await idle_cpu(deployment)
        counters_before = await database_counters(run.databases.admin_url, deployment.database)
        conn = await asyncpg.connect(deployment.database_url)
        try:
            watch = PostgresWatch(
                deployment.database_url, run.postmaster, exclude=[conn.get_server_pid()]
            )
            async with watch:
                before = Snapshot.take(deployment)
                submits = Submits()
                sender = asyncio.create_task(
                    submit_async_jobs(api, profile.e2e_jobs, profile.clients, submits)
                )
                progress = await wait_until_idle(
                    conn,
                    lambda: submits.finished,
                    drain_timeout_s(profile.e2e_jobs),
                    check=deployment.check_running,
                )
                await sender
                after = Snapshot.take(deployment)
            rows = await conn.fetch(
                "SELECT status, created_at, started_at, completed_at FROM jobs "
                "WHERE id = ANY($1::uuid[])",
                [uuid.UUID(job_id.removeprefix("job_")) for job_id in submits.ids],
            )
        finally:
            await conn.close()
    finally:
        deployment.stop()
    summary = e2e_summary(workers, submits, progress, rows, (before, after), profile)
    counters_after = await settled_counters(run.databases.admin_url, deployment.database)
    return (
        summary
        | watch.per_job(len(submits.ids))
        | {
            "database_per_job": per_job(counters_before, counters_after, len(submits.ids)),
            "idle_cpu_util": idle,
            "loadavg_before": loadavg_before,
            "loadavg_after": load_average(),
        }
    )


def e2e_summary(
    workers: int,
    submits: Submits,
    progress: Progress,
    rows: Sequence[Any],
    snapshots: tuple[Snapshot, Snapshot],
    profile: Profile,
) -> dict[str, Any]:
    before, after = snapshots
    accepted = len(submits.ids)
    statuses = Counter(str(r["status"]) for r in rows)
    latencies = sorted(
        x for r in rows if (x := ms_between(r["created_at"], r["completed_at"])) is not None
    )
    waits = [x for r in rows if (x := ms_between(r["created_at"], r["started_at"])) is not None]
    first_created = min((r["created_at"] for r in rows), default=None)
    last_completed = max((r["completed_at"] for r in rows if r["completed_at"]), default=None)
    window_ms = ms_between(first_created, last_completed)
    submit_s = submits.ended - submits.began
    polled_s = progress.done_at - submits.began
    submit_latencies = sorted(x * 1000 for x in submits.latencies)
    return {
        "workers": workers,
        "jobs": profile.e2e_jobs,
        "clients": profile.clients,
        "accepted": accepted,
        "submit_errors": submits.errors,
        "error_samples": submits.samples,
        "statuses": dict(statuses),
        "submit_per_s": rounded(accepted / submit_s, 1) if submit_s > 0 else None,
        "submit_p50_ms": rounded(percentile(submit_latencies, 50)),
        "submit_p99_ms": rounded(percentile(submit_latencies, 99)),
        "completed_per_s": rounded(accepted / window_ms * 1000, 1) if window_ms else None,
        "completed_per_s_polled": rounded(accepted / polled_s, 1) if polled_s > 0 else None,
        "first_submit_to_last_terminal_s": rounded(window_ms / 1000 if window_ms else None),
        "e2e_p50_ms": rounded(percentile(latencies, 50)),
        "e2e_p99_ms": rounded(percentile(latencies, 99)),
        "queue_wait_p50_ms": rounded(percentile(sorted(waits), 50)),
        "queue_wait_p99_ms": rounded(percentile(sorted(waits), 99)),
        "api_cpu_us_per_job": cpu_us(after.api_cpu - before.api_cpu, accepted),
        "workers_cpu_us_per_job": cpu_us(after.workers_cpu - before.workers_cpu, accepted),
        "workers_runqueue_wait_s": rounded(after.workers_waited - before.workers_waited),
    }


# -- 2. pickup latency ------------------------------------------------------------------------


async def pickup(run: Run) -> dict[str, Any]:
    profile = run.profile
    deployment = await run.deployment("pickup")
    loadavg_before = load_average()
    try:
        api = deployment.start_api()
        await deployment.wait_started(deployment.launch_workers(1))
        warm_up(api, WARMUP_JOBS)
        await asyncio.sleep(1.0)  # idle: nothing queued, nothing running
        records, round_trips = await submit_pickup_jobs(
            api, profile.pickup_jobs, profile.pickup_pause_s
        )
    finally:
        deployment.stop()
    conn = await asyncpg.connect(deployment.database_url)
    try:
        rows = await conn.fetch(
            "SELECT created_at, started_at FROM jobs WHERE id = ANY($1::uuid[])",
            [uuid.UUID(str(r["id"]).removeprefix("job_")) for r in records],
        )
    finally:
        await conn.close()
    stored = [x for r in rows if (x := ms_between(r["created_at"], r["started_at"])) is not None]
    from_records = [
        (parse_time(r["started_at"]) - parse_time(r["created_at"])).total_seconds() * 1000
        for r in records
        if r.get("started_at") and r.get("created_at")
    ]
    p50 = percentile(sorted(stored), 50)
    return {
        "jobs": profile.pickup_jobs,
        "pause_s": profile.pickup_pause_s,
        "from_database": stats_ms(stored),
        "from_job_records": stats_ms(from_records),
        "async_submit_round_trip": stats_ms(round_trips),
        "target_p50_ms": PICKUP_TARGET_MS,
        "meets_target": "unknown" if p50 is None else ("yes" if p50 <= PICKUP_TARGET_MS else "no"),
        "loadavg_before": loadavg_before,
        "loadavg_after": load_average(),
    }


# -- 3. the drain: filling the queue ----------------------------------------------------------


def quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def copy_rows_sql(table: str, columns: Sequence[str], changed: dict[str, str], where: str) -> str:
    """INSERT … SELECT that copies one row of `table` once per element of the `u` unnest,
    with the `changed` columns computed and every other column (a new one too) copied."""
    picked = [changed.get(c, f'src."{c}"') for c in columns]
    return (
        f"INSERT INTO {table} ({quoted(columns)}) SELECT {', '.join(picked)} "
        f"FROM {table} AS src, unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS u(a, b, n) "
        f"WHERE {where}"
    )


async def seed_queue(deployment: Deployment, jobs: int, method: str) -> dict[str, Any]:
    """Fill the deployment's queue with `jobs` queued echo jobs of the bench account."""
    from gengate.config import load_settings
    from gengate.services import accounts as account_service
    from gengate.services.gateway import Gateway
    from gengate.services.jobs import SubmitRequest, submit_job

    settings = load_settings(deployment.config, data_dir=deployment.data_dir)
    gw = await Gateway.open(settings)
    started = time.perf_counter()
    try:
        principal = await account_service.authenticate(gw.db, deployment.account["api_key"])
        request = SubmitRequest(model_id=MODEL, input={"prompt": "bench"})
        first = (await submit_job(gw, principal, request)).job
        if method == "submit":
            for _ in range(jobs - 1):
                await submit_job(gw, principal, request)
    finally:
        await gw.close()
    if method == "clone" and jobs > 1:
        await copy_submitted_job(deployment.database_url, first.id, jobs - 1)
    seconds = time.perf_counter() - started
    checks = await queue_checks(deployment.database_url)
    if checks["queued"] != jobs or checks["reserve_entries"] != jobs or not checks["balanced"]:
        raise RuntimeError(f"the seeded queue is not what {jobs} submits leave: {checks}")
    return {"method": method, "jobs": jobs, "seconds": rounded(seconds), "checks": checks}


async def copy_submitted_job(database_url: str, job_id: uuid.UUID, copies: int) -> None:
    """What `copies` more submits by the same account leave behind, in one transaction:
    the job row with a new id and the next fair-share tags, its `reserve` ledger entry
    with the running reservation, the account's reservation, the account's last tag."""
    from gengate.domain.ids import new_uuid
    from gengate.store.schema import jobs as jobs_table
    from gengate.store.schema import ledger_entries

    job_ids = [new_uuid() for _ in range(copies)]
    entry_ids = [new_uuid() for _ in range(copies)]
    copy_jobs = copy_rows_sql(
        "jobs",
        [c.name for c in jobs_table.columns],
        {"id": "u.a", "fair_tag": "src.fair_tag + u.n"},
        "src.id = $3",
    )
    copy_entries = copy_rows_sql(
        "ledger_entries",
        [c.name for c in ledger_entries.columns],
        {
            "id": "u.b",
            "job_id": "u.a",
            "reserved_after_micro": "src.reserved_after_micro + src.amount_micro * u.n",
        },
        "src.job_id = $3 AND src.kind = 'reserve'",
    )
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            job = await conn.fetchrow(
                "SELECT account_id, model, reserved_micro FROM jobs WHERE id = $1", job_id
            )
            await conn.execute(copy_jobs, job_ids, entry_ids, job_id)
            await conn.execute(copy_entries, job_ids, entry_ids, job_id)
            await conn.execute(
                "UPDATE accounts SET reserved_micro = reserved_micro + $2 WHERE id = $1",
                job["account_id"],
                job["reserved_micro"] * copies,
            )
            await conn.execute(
                "UPDATE fair_share SET last_tag = last_tag + $3 "
                "WHERE model = $1 AND account_id = $2",
                job["model"],
                job["account_id"],
                copies,
            )
    finally:
        await conn.close()


async def queue_checks(database_url: str) -> dict[str, Any]:
    """The books of the bench account: jobs by status, ledger entries by kind, and whether
    the account's reservation equals what its active jobs hold."""
    conn = await asyncpg.connect(database_url)
    try:
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM jobs GROUP BY status"))
        kinds = dict(await conn.fetch("SELECT kind, count(*) FROM ledger_entries GROUP BY kind"))
        held = await conn.fetchval(
            "SELECT coalesce(sum(reserved_micro), 0) FROM jobs WHERE status = ANY($1::text[])",
            list(ACTIVE),
        )
        reserved = await conn.fetchval("SELECT sum(reserved_micro) FROM accounts")
        outbox = await conn.fetchval("SELECT count(*) FROM webhook_messages")
    finally:
        await conn.close()
    return {
        "queued": statuses.get("queued", 0),
        "statuses": {str(k): int(v) for k, v in statuses.items()},
        "reserve_entries": kinds.get("reserve", 0),
        "ledger_entries": {str(k): int(v) for k, v in kinds.items()},
        "balanced": int(held) == int(reserved),
        "webhook_messages": int(outbox),
    }


# -- 3. the drain: worker processes and in-process ---------------------------------------------

DRAIN_WINDOW = (
    "SELECT min(started_at) AS first_claim, max(completed_at) AS last_done, "
    "count(*) FILTER (WHERE status = 'succeeded') AS succeeded FROM jobs"
)


async def drain_window(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(DRAIN_WINDOW)
    finally:
        await conn.close()
    window_ms = ms_between(row["first_claim"], row["last_done"])
    return {"window_s": None if window_ms is None else window_ms / 1000, "succeeded": row[2]}


def drain_result(
    label: str, jobs: int, window: dict[str, Any], checks: dict[str, Any]
) -> dict[str, Any]:
    seconds = window["window_s"]
    settled = (
        window["succeeded"] == jobs
        and checks["balanced"]
        and checks["ledger_entries"].get("release") == jobs
        and checks["ledger_entries"].get("charge") == jobs
    )
    return {
        "system": "gengate",
        "config": label,
        "jobs": jobs,
        "seconds": rounded(seconds),
        "jobs_per_s": rounded(jobs / seconds, 1) if seconds else None,
        "succeeded": window["succeeded"],
        "money_settled": settled,
        "books": checks,
    }


async def drain_with_workers(run: Run, workers: int) -> dict[str, Any]:
    jobs = run.profile.drain_jobs
    deployment = await run.deployment(f"drain{workers}")
    seed = await seed_queue(deployment, jobs, run.seed_method)
    admin = run.databases.admin_url
    counters_before = await database_counters(admin, deployment.database)
    loadavg_before = load_average()
    conn = await asyncpg.connect(deployment.database_url)
    try:
        launched_at = time.perf_counter()
        launched = deployment.launch_workers(workers)
        await deployment.wait_started(launched)
        watch = PostgresWatch(
            deployment.database_url, run.postmaster, exclude=[conn.get_server_pid()]
        )
        async with watch:
            progress = await wait_until_idle(
                conn, lambda: True, drain_timeout_s(jobs), check=deployment.check_running
            )
            workers_cpu = deployment.workers_cpu_since_start()
        waited = sum(w.runqueue_wait_seconds() for w in deployment.workers)
    finally:
        await conn.close()
        deployment.stop()
    counters = per_job(counters_before, await settled_counters(admin, deployment.database), jobs)
    result = drain_result(
        f"{workers} worker process{'es' if workers > 1 else ''}",
        jobs,
        await drain_window(deployment.database_url),
        await queue_checks(deployment.database_url),
    )
    return result | {
        "seed": seed,
        "launch_to_done_s": rounded(progress.done_at - launched_at),
        "cpu_us_per_job": cpu_us(workers_cpu, jobs),
        **watch.per_job(jobs),
        "runqueue_wait_s": rounded(waited),
        "database_per_job": counters,
        "loadavg_before": loadavg_before,
        "loadavg_after": load_average(),
    }


async def drain_in_process(run: Run, jobs: int, *, with_profile: bool) -> dict[str, Any]:
    """The drain by a `WorkerRuntime` in a child process of this script (see
    `inprocess_drain`), which reports its own timings, counters and profile."""
    label = "profile" if with_profile else "inprocess"
    deployment = await run.deployment(label)
    seed = await seed_queue(deployment, jobs, run.seed_method)
    admin = run.databases.admin_url
    counters_before = await database_counters(admin, deployment.database)
    loadavg_before = load_average()
    report = deployment.root / "inprocess.json"
    log_path = deployment.root / "inprocess.log"
    argv = [
        sys.executable,
        str(THIS_SCRIPT),
        "inprocess-drain",
        *deployment.where,
        "--jobs",
        str(jobs),
        "--report",
        str(report),
    ]
    if with_profile:
        argv += ["--profile", str(deployment.root / "drain.prof")]
    # The child's backends are new: the watch counts their start (connecting, the schema
    # check) as well, a few milliseconds in all.
    with log_path.open("wb") as out:
        async with PostgresWatch(deployment.database_url, run.postmaster) as watch:
            child = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), cwd=REPO
            )
            try:
                # The child has its own deadline; this one only catches a hung child.
                returncode = await asyncio.wait_for(child.wait(), drain_timeout_s(jobs) + 60)
            except TimeoutError:
                child.kill()
                await child.wait()
                raise
    if returncode != 0:
        raise RuntimeError(f"the in-process drain failed:\n{file_tail(log_path)}")
    counters = per_job(counters_before, await settled_counters(admin, deployment.database), jobs)
    child_report: dict[str, Any] = json.loads(report.read_text())
    if with_profile and run.keep_profile is not None:
        shutil.copyfile(deployment.root / "drain.prof", run.keep_profile)
    log_lines = log_path.read_bytes().splitlines()
    files = sum(1 for p in (deployment.data_dir / "files").rglob("*") if p.is_file())
    config = "in-process WorkerRuntime" + (" under cProfile" if with_profile else "")
    result = drain_result(
        config,
        jobs,
        await drain_window(deployment.database_url),
        await queue_checks(deployment.database_url),
    )
    return result | {
        "seed": seed,
        "cpu_us_per_job": cpu_us(child_report["cpu_s"], jobs),
        **watch.per_job(jobs),
        "database_per_job": counters,
        "child": child_report,
        "log_lines_per_job": rounded(len(log_lines) / jobs, 2),
        "transition_log_lines_per_job": rounded(
            sum(1 for line in log_lines if b'"job.transition"' in line) / jobs, 2
        ),
        "files_per_job": rounded(files / jobs, 2),
        "loadavg_before": loadavg_before,
        "loadavg_after": load_average(),
    }


# -- the child: an in-process drain -------------------------------------------------------------


def statement_kind(statement: str) -> str:
    words = statement.lstrip().split(None, 1)
    return words[0].upper() if words else "?"


async def inprocess_drain(
    config: Path, data_dir: Path, jobs: int, profile_to: Path | None
) -> dict[str, Any]:
    """Open the gateway as `gengate worker` does, run one `WorkerRuntime` for echo until no
    job is queued or running, and report wall and CPU time, statements and the profile."""
    from sqlalchemy import event

    from gengate.config import load_settings
    from gengate.logs import configure_logging
    from gengate.services.gateway import Gateway
    from gengate.worker.runtime import WorkerRuntime

    settings = load_settings(config, data_dir=data_dir)
    configure_logging(settings.log_level)
    gw = await Gateway.open(settings)
    statements: Counter[str] = Counter()

    def count_statement(*args: Any) -> None:
        statements[statement_kind(str(args[2]))] += 1

    event.listen(gw.db.engine.sync_engine, "before_cursor_execute", count_statement)
    poller = await asyncpg.connect(settings.resolved_database_url)
    runtime = WorkerRuntime(gw, [gw.catalog.get(MODEL)])
    profiler = cProfile.Profile() if profile_to is not None else None
    cpu_before, loop_before = time.process_time(), time.thread_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        await runtime.start()
        progress = await wait_until_idle(poller, lambda: True, drain_timeout_s(jobs))
    finally:
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu, loop_cpu = time.process_time() - cpu_before, time.thread_time() - loop_before
        await runtime.stop()
        await poller.close()
        await gw.close()
    report: dict[str, Any] = {
        "jobs": jobs,
        "start_to_done_s": rounded(elapsed),
        "cpu_s": rounded(cpu),
        "event_loop_thread_cpu_s": rounded(loop_cpu),
        "other_threads_cpu_s": rounded(cpu - loop_cpu),
        "statements_per_job": {k: rounded(v / jobs, 2) for k, v in statements.most_common()},
        "statements_total_per_job": rounded(sum(statements.values()) / jobs, 2),
        "progress_polls": progress.polls,
        "event_loop": type(asyncio.get_running_loop()).__module__,
    }
    if profiler is not None and profile_to is not None:
        profiler.dump_stats(profile_to)
        report["profile"] = summarise_profile(pstats.Stats(profiler), jobs)
    return report


#: cProfile's functions grouped into cost centres by where they live, first match wins.
#: Time is `tottime` (a function's own time, not its callees'), so the groups add up.
COST_CENTRES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    (
        "idle in the event loop's epoll: waiting for PostgreSQL (round trips, commits)",
        lambda path, name: "select.epoll" in name,
    ),
    (
        "socket send/recv syscalls (a send to PostgreSQL can stall while it is woken)",
        lambda path, name: "_socket.socket" in name,
    ),
    ("asyncpg (driver and protocol)", lambda path, name: "asyncpg" in path or "asyncpg" in name),
    (
        "SQLAlchemy (statements, results, greenlet bridge)",
        lambda path, name: "sqlalchemy" in path or "greenlet" in path or "greenlet" in name,
    ),
    (
        "logging (JSON log lines)",
        lambda path, name: "/logging/" in path or "pythonjsonlogger" in path,
    ),
    ("metrics (prometheus_client)", lambda path, name: "prometheus_client" in path),
    (
        "notifications (in-process, LISTEN/NOTIFY relay)",
        lambda path, name: (
            "gengate/store/pg_relay" in path or "gengate/services/notifications" in path
        ),
    ),
    (
        "file writes: storage and the hand-off to threads",
        lambda path, name: (
            "gengate/storage" in path
            or "anyio/" in path
            or "concurrent/futures" in path
            or path.endswith(("threading.py", "queue.py"))
            or "_thread.lock" in name
        ),
    ),
    (
        "event loop and tasks (asyncio)",
        lambda path, name: (
            "/asyncio/" in path or path.endswith("selectors.py") or "_contextvars.Context" in name
        ),
    ),
    ("gengate's own code (worker, services, store)", lambda path, name: "gengate/" in path),
    ("other C functions (orjson, uuid, time, …)", lambda path, name: path == "~"),
    ("other Python (stdlib, pydantic, …)", lambda path, name: True),
)


def cost_centre(path: str, name: str) -> str:
    return next(centre for centre, matches in COST_CENTRES if matches(path, name))


def function_label(path: str, line: int, name: str) -> str:
    if path == "~":
        return name
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            path = path.rpartition(marker)[2]
            break
    return f"{path}:{line}({name})"


def summarise_profile(stats: pstats.Stats, jobs: int) -> dict[str, Any]:
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    entries = stats.stats  # type: ignore[attr-defined]
    by_centre: dict[str, float] = {}
    for (path, _line, name), (_cc, _calls, own, _cumulative, _callers) in entries.items():
        centre = cost_centre(path, name)
        by_centre[centre] = by_centre.get(centre, 0.0) + own
    total = sum(by_centre.values())
    top = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:TOP_FUNCTIONS]
    ours = [item for item in entries.items() if "gengate/" in item[0][0]]
    ours.sort(key=lambda item: item[1][3], reverse=True)
    return {
        "profiled_s": rounded(total),
        "centres": [
            {
                "centre": centre,
                "us_per_job": rounded(seconds / jobs * 1e6, 1),
                "share": rounded(seconds / total if total else None),
            }
            for centre, seconds in sorted(by_centre.items(), key=lambda kv: -kv[1])
        ],
        "top_functions": [
            {
                "function": function_label(*key),
                "calls_per_job": rounded(calls / jobs, 2),
                "own_us_per_job": rounded(own / jobs * 1e6, 1),
                "cumulative_us_per_job": rounded(cumulative / jobs * 1e6, 1),
            }
            for key, (_cc, calls, own, cumulative, _callers) in top
        ],
        # A coroutine's cumulative time is its running time (and its callees') over all
        # its resumptions, without the time it was suspended; nested coroutines overlap.
        "gengate_by_cumulative": [
            {
                "function": function_label(*key),
                "calls_per_job": rounded(calls / jobs, 2),
                "cumulative_us_per_job": rounded(cumulative / jobs * 1e6, 1),
            }
            for key, (_cc, calls, _own, cumulative, _callers) in ours[:TOP_GENGATE]
        ],
    }


def inprocess_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py inprocess-drain")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--profile", type=Path, help="run under cProfile, stats to this file")
    args = parser.parse_args(argv)
    # The event loop `gengate worker` runs on (asyncio.run), not the client's uvloop.
    report = asyncio.run(inprocess_drain(args.config, args.data_dir, args.jobs, args.profile))
    args.report.write_text(json.dumps(report, indent=2))
    return 0


# -- 5. PgQueuer --------------------------------------------------------------------------------


def pgqueuer_python(venv: Path) -> Path:
    """The python of PgQueuer's own virtual environment, created (or fixed) when it is
    missing or holds other versions than PGQUEUER_REQUIREMENTS."""
    python = venv / "bin" / "python"
    wanted = dict(pin.split("==") for pin in PGQUEUER_REQUIREMENTS)
    if python.exists() and installed_versions(python, list(wanted)) == wanted:
        return python
    log(f"installing PgQueuer into {os.path.relpath(venv)} (a separate virtual environment)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *PGQUEUER_REQUIREMENTS,
        ],
        check=True,
        timeout=600,
    )
    found = installed_versions(python, list(wanted))
    if found != wanted:
        raise RuntimeError(f"PgQueuer's environment has {found}, expected {wanted}")
    return python


def installed_versions(python: Path, names: list[str]) -> dict[str, str | None]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))\n"
    )
    found = subprocess.run(
        [str(python), "-c", script, *names], capture_output=True, timeout=60, check=False
    )
    if found.returncode != 0:
        return {}
    versions: dict[str, str | None] = json.loads(found.stdout)
    return versions


async def run_driver(python: Path, argv: list[str], timeout_s: float) -> dict[str, Any]:
    """One phase of pgqueuer_drain.py; the JSON line it printed."""
    child = await asyncio.create_subprocess_exec(
        str(python),
        str(PGQUEUER_DRIVER),
        *argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(child.communicate(), timeout_s)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    lines = stdout.decode().strip().splitlines()
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"pgqueuer_drain.py {argv[0]} failed:\n{stderr.decode()[-3000:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    return found


async def pgqueuer_drain(
    run: Run, python: Path, config: PgQueuerConfig, label: str
) -> dict[str, Any]:
    jobs = run.profile.drain_jobs
    database = await run.databases.create(label)
    url = run.databases.url(database)
    admin = run.databases.admin_url
    enqueued = await run_driver(python, ["enqueue", "--dsn", url, "--jobs", str(jobs)], 600)
    counters_before = await database_counters(admin, database)
    loadavg_before = load_average()
    argv = [
        *("drain", "--dsn", url, "--jobs", str(jobs)),
        *("--consumers", str(config.consumers), "--batch-size", str(config.batch_size)),
        *("--loop", config.loop),
    ]
    async with PostgresWatch(url, run.postmaster) as watch:
        found = await run_driver(python, argv, drain_timeout_s(jobs))
    counters = per_job(counters_before, await settled_counters(admin, database), jobs)
    return {
        "system": "PgQueuer",
        "config": config.label,
        "jobs": jobs,
        "seconds": found["drain_s"],
        "jobs_per_s": found["jobs_per_s"],
        "succeeded": found["processed"],
        "left_in_queue": found["left_in_queue"],
        "cpu_us_per_job": found["cpu_us_per_job"],
        **watch.per_job(jobs),
        "database_per_job": counters,
        "enqueue": enqueued,
        "driver": found,
        "loadavg_before": loadavg_before,
        "loadavg_after": load_average(),
    }


async def pgqueuer_runs(run: Run, venv: Path) -> dict[str, Any]:
    try:
        python = pgqueuer_python(venv)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return {"error": f"PgQueuer could not be installed: {exc}", "runs": []}
    runs, failed = [], []
    for index, config in enumerate(PGQUEUER_CONFIGS):
        repeats = run.profile.pgqueuer_repeats if index == 0 else 1
        for repeat in range(repeats):
            log(f"pgqueuer: {config.label}, run {repeat + 1}/{repeats}")
            try:
                runs.append(await pgqueuer_drain(run, python, config, f"pgq{index}_{repeat}"))
            except (RuntimeError, TimeoutError) as exc:
                # gengate's numbers still count; the report says what went wrong.
                failed.append({"config": config.label, "error": str(exc)[-2000:]})
    reference = [r["jobs_per_s"] for r in runs if r["config"] == PGQUEUER_CONFIGS[0].label]
    return {
        "requirements": list(PGQUEUER_REQUIREMENTS),
        "runs": runs,
        "failed": failed,
        "reference_config": PGQUEUER_CONFIGS[0].label,
        "reference_jobs_per_s": rounded(percentile(sorted(reference), 50), 1),
    }


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Plan:
    mode: str
    profile: Profile
    parts: tuple[str, ...]
    postgres_url: str
    pgqueuer_venv: Path
    seed_method: str
    out: Path
    keep_profile: Path | None


async def run_parts(run: Run, plan: Plan) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if "e2e" in plan.parts:
        found["e2e"] = []
        for workers in run.profile.worker_counts:
            log(f"e2e: 1 API process, {workers} worker process(es)")
            cell = await e2e_cell(run, workers)
            log(
                f"  submit {cell['submit_per_s']}/s, completed {cell['completed_per_s']}/s, "
                f"e2e p50 {cell['e2e_p50_ms']} ms, p99 {cell['e2e_p99_ms']} ms"
            )
            found["e2e"].append(cell)
    if "pickup" in plan.parts:
        log(f"pickup: {run.profile.pickup_jobs} jobs, one every ~{run.profile.pickup_pause_s} s")
        found["pickup"] = await pickup(run)
    drains: list[dict[str, Any]] = []
    if "drain" in plan.parts:
        for workers in run.profile.drain_workers:
            log(f"drain: {run.profile.drain_jobs} jobs, {workers} worker process(es)")
            drains.append(await drain_with_workers(run, workers))
            log(f"  {drains[-1]['jobs_per_s']} jobs/s")
        log(f"drain: {run.profile.drain_jobs} jobs, in-process WorkerRuntime")
        drains.append(await drain_in_process(run, run.profile.drain_jobs, with_profile=False))
        log(f"  {drains[-1]['jobs_per_s']} jobs/s")
    if "profile" in plan.parts:
        log(f"profile: {run.profile.profile_jobs} jobs, in-process WorkerRuntime under cProfile")
        found["profile"] = await drain_in_process(run, run.profile.profile_jobs, with_profile=True)
    if "pgqueuer" in plan.parts:
        found["pgqueuer"] = await pgqueuer_runs(run, plan.pgqueuer_venv)
    found["drain"] = drains
    found["ratios"] = drain_ratios(drains, found.get("pgqueuer"))
    return found


def drain_ratios(drains: list[dict[str, Any]], pgqueuer: dict[str, Any] | None) -> list[Any]:
    reference = (pgqueuer or {}).get("reference_jobs_per_s")
    if not reference:
        return []
    return [
        {
            "gengate": d["config"],
            "gengate_jobs_per_s": d["jobs_per_s"],
            "pgqueuer_jobs_per_s": reference,
            "ratio": rounded(d["jobs_per_s"] / reference) if d["jobs_per_s"] else None,
        }
        for d in drains
    ]


async def run_all(plan: Plan, root: Path) -> dict[str, Any]:
    machine = describe_machine(PACKAGES)
    postgres = await describe_postgres(plan.postgres_url)
    databases = Databases(plan.postgres_url)
    run = Run(plan.profile, root, databases, postgres, plan.seed_method, plan.keep_profile)
    try:
        await run.prepare_template()
        found = await run_parts(run, plan)
    finally:
        await databases.drop_all()
    machine["loadavg_at_end"] = load_average()
    machine["postgresql"] = postgres
    result = {
        "benchmark": "cluster",
        "schema_version": 1,
        "run_at": utc_stamp(),
        "mode": plan.mode,
        "machine": machine,
        "setup": setup_description(plan),
        **found,
    }
    result["notes"] = notes(result)
    return result


def setup_description(plan: Plan) -> dict[str, Any]:
    profile = plan.profile
    return {
        "parts": list(plan.parts),
        "gengate_source": source_revision(),
        "e2e": {
            "jobs": profile.e2e_jobs,
            "clients": profile.clients,
            "worker_processes": list(profile.worker_counts),
            "submit_body": ASYNC_SUBMIT_BODY.decode(),
            "client": "one HTTP/1.1 keep-alive connection per client (a minimal raw client)",
            "warm_up_jobs": WARMUP_JOBS,
        },
        "pickup": {"jobs": profile.pickup_jobs, "pause_s": profile.pickup_pause_s},
        "drain": {
            "jobs": profile.drain_jobs,
            "worker_processes": list(profile.drain_workers),
            "seed": plan.seed_method,
        },
        "profile_jobs": profile.profile_jobs,
        "pgqueuer_repeats": profile.pgqueuer_repeats,
        "processes": {
            "api": "python -m gengate serve --no-workers --port P --data-dir D --config C",
            "worker": "python -m gengate worker --models echo --data-dir D --config C",
        },
        "gengate_config": {
            "rate_limit": "off",
            "access_log": False,
            f"models.{MODEL}.queue_depth": max(10_000, profile.drain_jobs),
            "everything else": "defaults (claim_batch 32, echo concurrency 64, pool 10+10)",
        },
        "progress_poll_interval_s": POLL_INTERVAL_S,
    }


def source_revision() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (read-only git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    changes = git("status", "--porcelain", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes_in_src": None if changes is None else bool(changes),
    }


def notes(result: dict[str, Any]) -> list[str]:
    machine = result["machine"]
    found = [
        f"{machine['usable_cpus']} CPU(s) shared by PostgreSQL, every gengate process and the "
        "load generator; load average "
        f"{machine['loadavg_at_start']} at start, {machine['loadavg_at_end']} at end (the "
        "'load' columns: 1-minute load before → after each part). Throughput moves with "
        "other work on the machine; CPU per job much less.",
        "PG µs/job: CPU time of the PostgreSQL backends serving the part's own database "
        "(sampled from /proc); the whole server's CPU, other databases included, is in the "
        "JSON as postgres_server_cpu_us_per_job.",
        "e2e: done/s is jobs / (first job's created_at → last job's completed_at), from the "
        "database; e2e latency is created_at → completed_at per job, wait is created_at → "
        "started_at. Worker CPU leaves out each worker's start-up; idle_cpu_util in the "
        "JSON is what each process burns with no job coming.",
        "pickup: created_at (the submit's clock reading before its write transaction) and "
        "started_at (the claim's) are stored with microseconds; the job records show "
        "milliseconds. The interval includes the submit's transaction and the wake-up.",
        "drain: seconds run from the first claim (min started_at) to the last terminal "
        "write (max completed_at); worker processes start after the queue is full. The "
        "jobs carry no webhook, so no outbox message is written. vs PgQueuer: jobs/s over "
        "the median of PgQueuer's reference runs.",
    ]
    if result.get("profile"):
        found.append(
            "profile: cProfile slows Python down, so its microseconds per job are for "
            "proportions; the unprofiled in-process drain gives the scale."
        )
    found += problems(result)
    return found


def problems(result: dict[str, Any]) -> list[str]:
    found = [
        f"e2e with {c['workers']} worker(s): {c['submit_errors']} submits failed, e.g. "
        f"{c['error_samples'][:1]}"
        for c in result.get("e2e", [])
        if c["submit_errors"]
    ]
    drains = [*result.get("drain", []), *([result["profile"]] if result.get("profile") else [])]
    found += [
        f"drain '{d['config']}': not every job succeeded and settled: {d['books']}"
        for d in drains
        if not d["money_settled"]
    ]
    pgqueuer = result.get("pgqueuer") or {}
    if pgqueuer.get("error"):
        found.append(str(pgqueuer["error"]))
    found += [f"PgQueuer '{r['config']}': {r['error']}" for r in pgqueuer.get("failed", [])]
    return found


# -- output ----------------------------------------------------------------------------------


def loadavg_text(part: dict[str, Any]) -> str:
    before, after = part.get("loadavg_before"), part.get("loadavg_after")
    return f"{before[0]:.1f}→{after[0]:.1f}" if before and after else "-"


def e2e_table(cells: list[dict[str, Any]], setup: dict[str, Any]) -> TableRows:
    rows = [
        [
            str(c["workers"]),
            fmt(c["submit_per_s"]),
            fmt(c["submit_p50_ms"]),
            fmt(c["completed_per_s"]),
            fmt(c["e2e_p50_ms"]),
            fmt(c["e2e_p99_ms"]),
            fmt(c["queue_wait_p50_ms"]),
            fmt(c["api_cpu_us_per_job"]),
            fmt(c["workers_cpu_us_per_job"]),
            fmt(c["postgres_cpu_us_per_job"]),
            fmt(c["database_per_job"].get("xact_commit")),
            str(c["peak_connections"]),
            loadavg_text(c),
        ]
        for c in cells
    ]
    columns = [
        *("workers", "submit/s", "sub p50", "done/s", "e2e p50", "e2e p99", "wait p50"),
        *("API µs", "wrk µs", "PG µs", "xact", "conns", "load"),
    ]
    title = (
        f"End to end over HTTP: {setup['jobs']} echo jobs (sync: false) from "
        f"{setup['clients']} clients → terminal; times in ms, CPU µs and transactions per job"
    )
    return title, columns, rows


def pickup_table(pickup: dict[str, Any]) -> TableRows:
    rows = []
    for source, key in (
        ("database (1 us)", "from_database"),
        ("job records (1 ms)", "from_job_records"),
        ("async submit round trip", "async_submit_round_trip"),
    ):
        v = pickup[key]
        rows.append([source, str(v["samples"]), fmt(v["p50_ms"]), fmt(v["p99_ms"])])
    rows.append([f"target: p50 ≤ {PICKUP_TARGET_MS:g} ms", "", pickup["meets_target"], ""])
    return "Pickup, queued → running, idle (ms)", ["source", "jobs", "p50", "p99"], rows


def drain_table(result: dict[str, Any]) -> TableRows:
    pgqueuer = result.get("pgqueuer") or {}
    reference = pgqueuer.get("reference_jobs_per_s")
    runs = [*result.get("drain", []), *pgqueuer.get("runs", [])]
    rows = []
    for d in runs:
        ratio = d["jobs_per_s"] / reference if reference and d["jobs_per_s"] else None
        rows.append(
            [
                f"{d['system']}: {d['config']}",
                fmt(d["seconds"]),
                fmt(d["jobs_per_s"]),
                f"{ratio:.0%}" if ratio is not None else "-",
                fmt(d.get("cpu_us_per_job")),
                fmt(d.get("postgres_cpu_us_per_job")),
                fmt(d.get("database_per_job", {}).get("xact_commit")),
                loadavg_text(d),
            ]
        )
    jobs = runs[0]["jobs"] if runs else 0
    columns = ["run", "seconds", "jobs/s", "vs PgQ", "CPU µs", "PG µs", "xact", "load"]
    title = f"Drain: {jobs} queued jobs → terminal, no HTTP; CPU µs and transactions per job"
    return title, columns, rows


def profile_tables(profile: dict[str, Any]) -> list[TableRows]:
    child = profile["child"]
    counts = profile["database_per_job"]
    jobs = profile["jobs"]

    def us(seconds: float) -> str:
        return fmt(seconds / jobs * 1e6)

    counters = [
        ["wall time (under cProfile)", us(child["start_to_done_s"]), "µs"],
        ["CPU, event-loop thread", us(child["event_loop_thread_cpu_s"]), "µs"],
        ["CPU, other threads (file writes)", us(child["other_threads_cpu_s"]), "µs"],
        ["CPU, PostgreSQL backends", fmt(profile["postgres_cpu_us_per_job"]), "µs"],
        ["SQL statements (SQLAlchemy)", fmt(child["statements_total_per_job"]), "per job"],
        *(
            [f"  {kind}", fmt(count), "per job"]
            for kind, count in child["statements_per_job"].items()
        ),
        ["transactions committed", fmt(counts.get("xact_commit")), "per job"],
        ["rows inserted", fmt(counts.get("tup_inserted")), "per job"],
        ["rows updated", fmt(counts.get("tup_updated")), "per job"],
        ["WAL bytes (whole server)", fmt(counts.get("server_wal_bytes")), "per job"],
        ["log lines", fmt(profile["log_lines_per_job"]), "per job"],
        ["files written", fmt(profile["files_per_job"]), "per job"],
    ]
    centres = [
        [c["centre"], fmt(c["us_per_job"]), f"{c['share']:.0%}" if c["share"] is not None else "-"]
        for c in child["profile"]["centres"]
    ]
    top = [
        [
            f["function"][-64:],
            fmt(f["calls_per_job"]),
            fmt(f["own_us_per_job"]),
            fmt(f["cumulative_us_per_job"]),
        ]
        for f in child["profile"]["top_functions"]
    ]
    ours = [
        [f["function"], fmt(f["calls_per_job"]), fmt(f["cumulative_us_per_job"])]
        for f in child["profile"]["gengate_by_cumulative"]
    ]
    return [
        (f"Per job: in-process drain of {jobs} jobs", ["counter", "value", "unit"], counters),
        (
            "Where the drain's time goes (cProfile, own time)",
            ["centre", "µs/job", "share"],
            centres,
        ),
        ("Top functions by own time", ["function", "calls/job", "own µs", "cum µs"], top),
        (
            "gengate's functions by cumulative time (coroutines: running time, all resumptions)",
            ["function", "calls/job", "cum µs"],
            ours,
        ),
    ]


def tables(result: dict[str, Any]) -> list[TableRows]:
    found: list[TableRows] = []
    if result.get("e2e"):
        found.append(e2e_table(result["e2e"], result["setup"]["e2e"]))
    if result.get("pickup"):
        found.append(pickup_table(result["pickup"]))
    if result.get("drain") or (result.get("pgqueuer") or {}).get("runs"):
        found.append(drain_table(result))
    if result.get("profile"):
        found.extend(profile_tables(result["profile"]))
    return found


def print_report(result: dict[str, Any]) -> None:
    machine = result["machine"]
    postgres = machine["postgresql"]
    header = (
        f"{machine['cpu_model']}, {machine['usable_cpus']} CPU(s), {machine['python']}; "
        f"{str(postgres['version']).split(' on ')[0]} (fsync {postgres['fsync']}, "
        f"synchronous_commit {postgres['synchronous_commit']}); mode {result['mode']}"
    )
    left = ("run", "source", "counter", "centre", "function")
    print_tables(header, tables(result), result["notes"], left)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark gengate in cluster mode on PostgreSQL, and PgQueuer beside it."
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 10,000; quick 2,000)")
    parser.add_argument("--skip-pgqueuer", action="store_true", help="leave out PgQueuer")
    parser.add_argument(
        "--parts", help=f"comma-separated parts to run (default: all of {','.join(PARTS)})"
    )
    parser.add_argument(
        "--seed",
        choices=("clone", "submit"),
        default="clone",
        help="fill drain queues by copying one submitted job in SQL (clone) or by running "
        "the submit service for every job (submit, slow)",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="a superuser URL")
    parser.add_argument(
        "--keep-profile",
        type=Path,
        help="also save the profiled drain's cProfile stats here (for python -m pstats)",
    )
    parser.add_argument(
        "--pgqueuer-venv", type=Path, default=PGQUEUER_VENV, help="PgQueuer's own environment"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON results file (default: benchmarks/results/cluster.json)",
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    profile = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    if args.jobs is not None:
        profile = Profile(
            **{
                **profile.__dict__,
                "drain_jobs": args.jobs,
                "profile_jobs": min(args.jobs, profile.profile_jobs),
            }
        )
        mode += " (custom)"
    parts = tuple(p.strip() for p in (args.parts or ",".join(PARTS)).split(",") if p.strip())
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.skip_pgqueuer:
        parts = tuple(p for p in parts if p != "pgqueuer")
    return Plan(
        mode,
        profile,
        parts,
        args.postgres_url,
        args.pgqueuer_venv,
        args.seed,
        args.out,
        args.keep_profile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["inprocess-drain"]:
        return inprocess_main(arguments[1:])
    plan = make_plan(parse_args(arguments))
    with tempfile.TemporaryDirectory(prefix="gengate-cluster-bench-") as tmp:
        result = run_async(run_all(plan, Path(tmp)))
    print_report(result)
    write_results(result, plan.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
