"""HTTP API benchmark: gengate against a bare Starlette app, side by side in one run.

    python benchmarks/http_api.py [--quick] [--out benchmarks/results/http_api.json]

It starts real server processes on 127.0.0.1 and drives them from this process (the load
generator, separate from every server) with N concurrent clients, each on its own HTTP/1.1
keep-alive connection, for a fixed duration per cell after a warm-up:

1. submit: `POST /v1/models/echo/run` (sync, the default), each answer must be the
   finished job (`status: succeeded`); jobs/s and p50/p99 latency.
2. get: `GET /v1/jobs/{id}` of a finished job; requests/s and p50/p99 latency.
3. the same two requests against `benchmarks/bare_app.py` (uvicorn + Starlette, same server
   options, answering with a copy of gengate's own job record), and the ratios
   gengate/bare (targets: GET >= 60 %, submit >= 40 %).
4. pickup latency (queued -> running) on an idle system: `sync: false` echo jobs one at a
   time with a pause between them; `started_at - created_at` of each job.

Besides throughput and latency, every cell records the CPU time the server process used
per request (all its threads, from /proc): on a shared machine that number moves far less
than requests/s, so the report gives a CPU-based ratio next to the throughput ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from _common import (
    BENCH_DIR,
    GENGATE,
    REPO,
    REQUEST_TIMEOUT_S,
    SUBMIT_BODY,
    SUBMIT_PATH,
    Requester,
    Server,
    TableRows,
    Target,
    client_loop_name,
    create_account,
    describe_machine,
    fmt,
    free_port,
    load_average,
    log,
    make_requester,
    parse_time,
    percentile,
    print_tables,
    rounded,
    run_async,
    runqueue_wait,
    share,
    stats_ms,
    submit_pickup_jobs,
    utc_stamp,
    write_results,
)

BARE_APP = BENCH_DIR / "bare_app.py"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "http_api.json"

TARGETS = {"get": 0.60, "submit": 0.40}
#: A load generator using this share of one core or more is probably the bottleneck.
CLIENT_BOUND_UTIL = 0.85
PACKAGES = (
    "gengate",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "asyncpg",
    "httpx",
    "orjson",
    "uvloop",
    "httptools",
)


@dataclass(frozen=True)
class Profile:
    clients: tuple[int, ...]
    duration_s: float
    warmup_s: float
    pickup_jobs: int
    pickup_pause_s: float


FULL = Profile(
    clients=(1, 8, 32), duration_s=5.0, warmup_s=1.0, pickup_jobs=200, pickup_pause_s=0.1
)
QUICK = Profile(clients=(1, 8), duration_s=2.0, warmup_s=0.5, pickup_jobs=40, pickup_pause_s=0.05)


def gengate_server(root: Path, name: str, *, access_log: bool) -> Server:
    """A data dir and config for `gengate serve`, with a funded `bench` account."""
    home = root / name
    data_dir = home / "data"
    data_dir.mkdir(parents=True)
    config = home / "gengate.toml"
    config.write_text(f'rate_limit = "off"\naccess_log = {"true" if access_log else "false"}\n')
    where = ["--data-dir", str(data_dir), "--config", str(config)]
    api_key = str(create_account(where)["api_key"])
    port = free_port()
    return Server(
        name=name,
        description=f"gengate serve, access_log={'on' if access_log else 'off'}",
        argv=[*GENGATE, "serve", "--port", str(port), *where],
        port=port,
        log_path=home / "server.log",
        api_key=api_key,
    )


def bare_server(root: Path, document: Path) -> Server:
    port = free_port()
    return Server(
        name="bare",
        description="uvicorn + bare Starlette (benchmarks/bare_app.py)",
        argv=[sys.executable, str(BARE_APP), "--port", str(port), "--document", str(document)],
        port=port,
        log_path=root / "bare.log",
    )


def verify(status: int, body: bytes) -> str | None:
    """None when the answer is a finished job (or the bare app's copy of one)."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    try:
        job_status = orjson.loads(body).get("status")
    except (orjson.JSONDecodeError, AttributeError):
        return f"not a JSON object: {body[:200]!r}"
    if job_status != "succeeded":
        return f"job status {job_status!r}, expected 'succeeded'"
    return None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.samples) < 3:
            self.samples.append(message)


async def client_loop(requester: Requester, window: tuple[float, float], tally: Tally) -> None:
    """Send back to back until the window ends; count what completes inside it."""
    begin, end = window
    while (started := time.perf_counter()) < end:
        problem: str | None
        try:
            status, body = await asyncio.wait_for(requester.send(), REQUEST_TIMEOUT_S)
            problem = verify(status, body)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            await requester.reset()
            await asyncio.sleep(0.01)
        finished = time.perf_counter()
        if begin <= finished <= end:
            if problem is None:
                tally.latencies.append(finished - started)
            else:
                tally.error(problem)


@dataclass(frozen=True)
class Sample:
    wall: float
    client_cpu: float
    server_cpu: float
    client_wait: float
    server_wait: float


def sample(server: Server) -> Sample:
    return Sample(
        wall=time.perf_counter(),
        client_cpu=time.process_time(),
        server_cpu=server.cpu_seconds(),
        client_wait=runqueue_wait("/proc/thread-self/schedstat"),
        server_wait=server.runqueue_wait_seconds(),
    )


async def monitor(server: Server, window: tuple[float, float]) -> tuple[Sample, Sample]:
    begin, end = window
    await asyncio.sleep(max(0.0, begin - time.perf_counter()))
    first = sample(server)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    return first, sample(server)


@dataclass
class Cell:
    endpoint: str
    clients: int
    server: str
    requests: int
    errors: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    server_cpu_util: float | None
    client_cpu_util: float | None
    server_cpu_us_per_req: float | None
    client_cpu_us_per_req: float | None
    server_runqueue_wait: float | None
    client_runqueue_wait: float | None
    client_bound: bool
    error_samples: list[str]


async def run_cell(
    server: Server, target: Target, *, endpoint: str, clients: int, profile: Profile, kind: str
) -> Cell:
    requesters = [make_requester(kind, target) for _ in range(clients)]
    await asyncio.gather(*(r.connect() for r in requesters))
    begin = time.perf_counter() + profile.warmup_s
    window = (begin, begin + profile.duration_s)
    tallies = [Tally() for _ in requesters]
    watcher = asyncio.create_task(monitor(server, window))
    await asyncio.gather(
        *(client_loop(r, window, t) for r, t in zip(requesters, tallies, strict=True))
    )
    first, last = await watcher
    await asyncio.gather(*(r.reset() for r in requesters))
    latencies = sorted(x for t in tallies for x in t.latencies)
    return summarise(endpoint, clients, server.name, latencies, tallies, profile, first, last)


def summarise(
    endpoint: str,
    clients: int,
    server: str,
    latencies: list[float],
    tallies: list[Tally],
    profile: Profile,
    first: Sample,
    last: Sample,
) -> Cell:
    count = len(latencies)
    rps = count / profile.duration_s
    wall = last.wall - first.wall
    served = rps * wall
    server_cpu = last.server_cpu - first.server_cpu
    client_cpu = last.client_cpu - first.client_cpu
    client_util = client_cpu / wall if wall > 0 else math.nan

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 3)

    return Cell(
        endpoint=endpoint,
        clients=clients,
        server=server,
        requests=count,
        errors=sum(t.errors for t in tallies),
        rps=round(rps, 1),
        p50_ms=ms(percentile(latencies, 50)),
        p99_ms=ms(percentile(latencies, 99)),
        mean_ms=ms(sum(latencies) / count if count else None),
        server_cpu_util=rounded(server_cpu / wall if wall > 0 else math.nan),
        client_cpu_util=rounded(client_util),
        server_cpu_us_per_req=rounded(server_cpu / served * 1e6 if served else math.nan, 1),
        client_cpu_us_per_req=rounded(client_cpu / served * 1e6 if served else math.nan, 1),
        server_runqueue_wait=share(last.server_wait - first.server_wait, wall),
        client_runqueue_wait=share(last.client_wait - first.client_wait, wall),
        client_bound=bool(client_util >= CLIENT_BOUND_UTIL),
        error_samples=[s for t in tallies for s in t.samples][:3],
    )


# -- preparation and pickup ---------------------------------------------------------------


def finished_job(server: Server) -> dict[str, Any]:
    """One sync echo job on `server`: its finished record."""
    response = httpx.post(
        f"{server.url}{SUBMIT_PATH}",
        content=SUBMIT_BODY,
        headers={**server.headers, "Content-Type": "application/json"},
        timeout=REQUEST_TIMEOUT_S,
    )
    problem = verify(response.status_code, response.content)
    if problem is not None:
        raise RuntimeError(f"{server.name}: the preparatory submit failed: {problem}")
    record: dict[str, Any] = response.json()
    return record


def database_pickups(db_path: Path, job_ids: list[str]) -> list[float] | None:
    """started_at - created_at (ms, unrounded) as the database stores them, or None."""
    wanted = {job_id.removeprefix("job_").replace("-", "").lower() for job_id in job_ids}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT id, created_at, started_at FROM jobs").fetchall()
    except sqlite3.Error:
        return None
    values = []
    for job_id, created, started in rows:
        if str(job_id).replace("-", "").lower() in wanted and created and started:
            delta = parse_time(str(started)) - parse_time(str(created))
            values.append(delta.total_seconds() * 1000)
    return values if len(values) == len(wanted) else None


def pickup_report(
    records: list[dict[str, Any]], precise: list[float] | None, round_trips: list[float]
) -> dict[str, Any]:
    from_records = [
        (parse_time(r["started_at"]) - parse_time(r["created_at"])).total_seconds() * 1000
        for r in records
        if r.get("started_at") and r.get("created_at")
    ]
    report: dict[str, Any] = {
        "from_job_records": {**stats_ms(from_records), "resolution_ms": 1},
        "from_database": (
            {**stats_ms(precise), "resolution_ms": 0.001} if precise is not None else None
        ),
        "async_submit_round_trip": stats_ms(round_trips),
    }
    notes = [
        "created_at is the submit's clock reading just before its write transaction; "
        "started_at is the claim's clock reading, so the interval covers the submit's "
        "write transaction, the wake-up of the claim loop and the start of the claim.",
        "async_submit_round_trip is the client-side time of each `sync: false` submit "
        "(auth, validation, the write transaction and the 202 answer), for comparison; "
        "the request and the claim loop share one event loop and one CPU.",
        "Job records show timestamps truncated to whole milliseconds: each difference "
        "carries up to 1 ms of quantisation error, so a p50 <= 2 ms cannot be shown from "
        "the records alone.",
    ]
    if precise is not None:
        notes.append(
            "from_database uses the same two timestamps as stored (microseconds), read from "
            "the benchmark's own database file after the server stopped: that is the "
            "number to quote."
        )
    else:
        notes.append(
            "Microsecond values were not available; an honest sub-2 ms figure needs the "
            "stored timestamps (microseconds) or a queue-wait histogram exported as a metric."
        )
    report["notes"] = notes
    return report


# -- the run ------------------------------------------------------------------------------


@dataclass
class Plan:
    mode: str
    profile: Profile
    client_kind: str
    with_access_log: bool


def idle_cpu(servers: list[Server], seconds: float = 2.0) -> dict[str, float | None]:
    """Each server's CPU use while nobody calls it (background loops), as a share of a core."""
    time.sleep(0.5)
    before = {s.name: s.cpu_seconds() for s in servers}
    started = time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - started
    return {s.name: rounded((s.cpu_seconds() - before[s.name]) / wall) for s in servers}


def targets_for(server: Server, job_id: str) -> dict[str, Target]:
    return {
        "get": Target(server.port, "GET", f"/v1/jobs/{job_id}", b"", server.headers),
        "submit": Target(server.port, "POST", SUBMIT_PATH, SUBMIT_BODY, server.headers),
    }


def run_cells(servers: list[Server], job_ids: dict[str, str], plan: Plan) -> list[Cell]:
    """Every (clients, endpoint) cell on every server, interleaved so that a drift in the
    machine's background load hits all servers alike."""
    cells = []
    total = len(plan.profile.clients) * 2 * len(servers)
    for clients in plan.profile.clients:
        for endpoint in ("get", "submit"):
            for server in servers:
                target = targets_for(server, job_ids[server.name])[endpoint]
                cell = run_async(
                    run_cell(
                        server,
                        target,
                        endpoint=endpoint,
                        clients=clients,
                        profile=plan.profile,
                        kind=plan.client_kind,
                    )
                )
                cells.append(cell)
                log(
                    f"[{len(cells)}/{total}] {endpoint:6} clients={clients:<3} "
                    f"{server.name:12} {cell.rps:9.1f} req/s  p50 {cell.p50_ms} ms  "
                    f"p99 {cell.p99_ms} ms  errors {cell.errors}"
                )
                time.sleep(0.3)
    return cells


def ratios(cells: list[Cell], candidates: Sequence[str]) -> list[dict[str, Any]]:
    by_key = {(c.server, c.endpoint, c.clients): c for c in cells}
    rows = []
    for candidate in candidates:
        for endpoint in ("get", "submit"):
            for clients in sorted({c.clients for c in cells}):
                ours = by_key.get((candidate, endpoint, clients))
                bare = by_key.get(("bare", endpoint, clients))
                if ours is None or bare is None:
                    continue
                rps_ratio = ours.rps / bare.rps if bare.rps else None
                cpu_ratio = None
                if ours.server_cpu_us_per_req and bare.server_cpu_us_per_req:
                    cpu_ratio = bare.server_cpu_us_per_req / ours.server_cpu_us_per_req
                rows.append(
                    {
                        "server": candidate,
                        "endpoint": endpoint,
                        "clients": clients,
                        "rps": ours.rps,
                        "bare_rps": bare.rps,
                        "ratio_rps": rounded(rps_ratio),
                        "ratio_cpu": rounded(cpu_ratio),
                        "target": TARGETS[endpoint],
                        "meets_target": None
                        if rps_ratio is None
                        else rps_ratio >= TARGETS[endpoint],
                        "bare_client_bound": bare.client_bound,
                    }
                )
    return rows


def run(plan: Plan, root: Path) -> dict[str, Any]:
    machine = describe_machine(PACKAGES)
    gengate = gengate_server(root, "gengate", access_log=False)
    servers = [gengate]
    if plan.with_access_log:
        servers.append(gengate_server(root, "gengate+log", access_log=True))
    started: list[Server] = []
    try:
        for server in servers:
            log(f"starting {server.description} on port {server.port}")
            server.start()
            started.append(server)
        job_ids = {s.name: str(finished_job(s)["id"]) for s in servers}
        record = finished_job(gengate)
        record_bytes = orjson.dumps(record)
        document = root / "record.json"
        document.write_bytes(record_bytes)
        bare = bare_server(root, document)
        log(f"starting {bare.description} on port {bare.port}")
        bare.start()
        started.append(bare)
        job_ids["bare"] = "job_bare"
        idle = idle_cpu([*servers, bare])
        cells = run_cells([bare, *servers], job_ids, plan)
        for server in started:
            if server is not gengate:
                server.stop()
        log(
            f"pickup: {plan.profile.pickup_jobs} async jobs, "
            f"one every ~{plan.profile.pickup_pause_s} s"
        )
        time.sleep(1.0)
        records, round_trips = run_async(
            submit_pickup_jobs(gengate, plan.profile.pickup_jobs, plan.profile.pickup_pause_s)
        )
    finally:
        for server in reversed(started):
            server.stop()
    precise = database_pickups(root / "gengate" / "data" / "gengate.db", [r["id"] for r in records])
    machine["loadavg_at_end"] = load_average()
    return {
        "benchmark": "http_api",
        "schema_version": 1,
        "run_at": utc_stamp(),
        "mode": plan.mode,
        "machine": machine,
        "setup": {
            **setup_description(plan, servers, bare, len(record_bytes)),
            "idle_server_cpu_util": idle,
        },
        "cells": [asdict(cell) for cell in cells],
        "ratios": ratios(cells, [s.name for s in servers]),
        "pickup": pickup_report(records, precise, round_trips),
        "notes": notes(machine, cells),
    }


def setup_description(
    plan: Plan, servers: list[Server], bare: Server, record_bytes: int
) -> dict[str, Any]:
    return {
        "clients": list(plan.profile.clients),
        "duration_s": plan.profile.duration_s,
        "warmup_s": plan.profile.warmup_s,
        "pickup_jobs": plan.profile.pickup_jobs,
        "pickup_pause_s": plan.profile.pickup_pause_s,
        "load_generator": {
            "client": plan.client_kind,
            "event_loop": client_loop_name(),
            "process": "one process, one thread, separate from every server",
            "connections": "one HTTP/1.1 keep-alive connection per simulated client",
        },
        "servers": {s.name: s.description for s in [*servers, bare]},
        "server_options": "one process each; uvicorn loop/http auto, log_config=None, "
        "access_log=False (gengate's own JSON request log as configured)",
        "gengate_config": {"rate_limit": "off", "access_log": "off (gengate+log: on)"},
        "submit_body": SUBMIT_BODY.decode(),
        "job_record_bytes": record_bytes,
    }


def notes(machine: dict[str, Any], cells: list[Cell]) -> list[str]:
    found = [
        f"{machine['usable_cpus']} CPU(s) shared by the server under test, the idle servers "
        "and the load generator; anything else running on the machine shows up as noise "
        f"(load average {machine['loadavg_at_start']} at start, "
        f"{machine.get('loadavg_at_end')} at end).",
        "ratio_rps compares requests/s; ratio_cpu compares server CPU time per request "
        "(bare / gengate), which depends much less on background load.",
        "'srv waited' (server_runqueue_wait) is the share of the window the server's "
        "event-loop thread was ready to run but waited for a CPU: where it is high, the "
        "machine, not the server, limited requests/s and latency.",
    ]
    bound = [c for c in cells if c.client_bound]
    if bound:
        names = ", ".join(sorted({f"{c.server}/{c.endpoint}/{c.clients}" for c in bound}))
        found.append(
            f"The load generator used >= {CLIENT_BOUND_UTIL:.0%} of a core in: {names}. "
            "There the client, not the server, limits requests/s (and a bare baseline that "
            "is client-bound makes ratio_rps look better than it is)."
        )
    failed = [c for c in cells if c.errors]
    if failed:
        found.append(
            "Cells with errors: "
            + ", ".join(f"{c.server}/{c.endpoint}/{c.clients} ({c.errors})" for c in failed)
        )
    return found


# -- output -------------------------------------------------------------------------------


def tables(result: dict[str, Any]) -> list[TableRows]:
    cell_rows = [
        [
            c["endpoint"],
            str(c["clients"]),
            c["server"],
            fmt(c["rps"]),
            fmt(c["p50_ms"]),
            fmt(c["p99_ms"]),
            fmt(c["server_cpu_us_per_req"]),
            fmt(c["server_runqueue_wait"]),
            fmt(c["client_cpu_util"]) + (" (bound)" if c["client_bound"] else ""),
            str(c["errors"]),
        ]
        for c in result["cells"]
    ]
    ratio_rows = [
        [
            r["endpoint"],
            str(r["clients"]),
            r["server"],
            f"{r['ratio_rps']:.0%}" if r["ratio_rps"] is not None else "-",
            f"{r['ratio_cpu']:.0%}" if r["ratio_cpu"] is not None else "-",
            f">= {r['target']:.0%}",
            "yes" if r["meets_target"] else "no",
        ]
        for r in result["ratios"]
    ]
    pickup = result["pickup"]
    pickup_rows = [
        [source, fmt(v["samples"]), fmt(v["p50_ms"]), fmt(v["p99_ms"]), fmt(v["max_ms"])]
        for source, v in (
            ("job records (1 ms)", pickup["from_job_records"]),
            ("database (1 us)", pickup["from_database"]),
            ("async submit round trip", pickup["async_submit_round_trip"]),
        )
        if v is not None
    ]
    return [
        (
            "Throughput and latency",
            [
                *("endpoint", "N", "server", "req/s", "p50 ms", "p99 ms"),
                *("srv CPU us/req", "srv waited", "client CPU", "errors"),
            ],
            cell_rows,
        ),
        (
            "gengate / bare",
            ["endpoint", "N", "server", "req/s ratio", "CPU ratio", "target", "meets"],
            ratio_rows,
        ),
        (
            "Pickup latency, queued -> running (ms)",
            ["source", "jobs", "p50", "p99", "max"],
            pickup_rows,
        ),
    ]


def print_report(result: dict[str, Any]) -> None:
    machine = result["machine"]
    header = (
        f"{machine['cpu_model']}, {machine['usable_cpus']} CPU(s), {machine['python']}; "
        f"mode {result['mode']}, {result['setup']['duration_s']} s per cell, "
        f"client {result['setup']['load_generator']['client']}"
    )
    notes = result["notes"] + result["pickup"]["notes"]
    print_tables(header, tables(result), notes, left=("endpoint", "server", "source"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark gengate's HTTP API against a bare Starlette app."
    )
    parser.add_argument("--quick", action="store_true", help="fewer clients, 2 s cells")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="JSON results file (default: benchmarks/results/http_api.json)",
    )
    parser.add_argument("--clients", help="comma-separated client counts (e.g. 1,8,32)")
    parser.add_argument("--duration", type=float, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per cell")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator client: a minimal HTTP/1.1 client on asyncio streams (raw, "
        "cheap per request) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--no-access-log-run", action="store_true", help="skip the run with the access log on"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.clients:
        profile = Profile(
            tuple(int(n) for n in args.clients.split(",")),
            profile.duration_s,
            profile.warmup_s,
            profile.pickup_jobs,
            profile.pickup_pause_s,
        )
    if args.duration is not None or args.warmup is not None:
        profile = Profile(
            profile.clients,
            args.duration if args.duration is not None else profile.duration_s,
            args.warmup if args.warmup is not None else profile.warmup_s,
            profile.pickup_jobs,
            profile.pickup_pause_s,
        )
    mode = "quick" if args.quick else "full"
    if args.clients or args.duration is not None or args.warmup is not None:
        mode += " (custom)"
    plan = Plan(mode, profile, args.client, not args.no_access_log_run)
    with tempfile.TemporaryDirectory(prefix="gengate-bench-") as tmp:
        result = run(plan, Path(tmp))
    print_report(result)
    write_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
