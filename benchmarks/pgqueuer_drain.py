"""The PgQueuer side of `benchmarks/cluster.py`: enqueue N no-op jobs, drain them with
PgQueuer's own consumer, and print one line of JSON with the timings.

    python pgqueuer_drain.py enqueue --dsn postgresql://postgres@127.0.0.1:5432/DB --jobs N
    python pgqueuer_drain.py drain --dsn … --jobs N [--consumers 5] [--batch-size 10]
                                   [--loop uvloop]

Two commands, so the caller can watch PostgreSQL during the drain alone. It runs with the
python of a separate virtual environment that holds only PgQueuer and its dependencies
(cluster.py creates it), never gengate's: it imports nothing from gengate or from this
folder.

`enqueue` installs PgQueuer's tables in the (fresh) database and inserts N jobs in
batches. `drain` is PgQueuer's documented fast path: `QueueManager.run(batch_size=…,
mode=drain)`, which claims `batch_size` jobs per dequeue statement (FOR UPDATE SKIP
LOCKED), writes their final status through a batching buffer, and returns once the
queue is empty. Each consumer is one QueueManager on its own connection, all in this
process (as in PgQueuer's own drain benchmark). The clock runs from just before the
consumers start to when the last one returned: claiming, running, the status log
writes and the removal of every job from the queue table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from pgqueuer import Job, Queries, QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "noop"
ENQUEUE_CHUNK = 1_000


async def install(dsn: str) -> None:
    """PgQueuer's tables in a fresh database (or emptied, when they exist)."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.has_table(queries.qbe.settings.queue_table):
            await queries.install()
        await queries.clear_queue()
        await queries.clear_queue_log()
        await queries.clear_statistics_log()
    finally:
        await connection.close()


async def enqueue(dsn: str, jobs: int) -> float:
    """`jobs` no-op jobs in batches of ENQUEUE_CHUNK; the seconds it took."""
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        started = time.perf_counter()
        for first in range(0, jobs, ENQUEUE_CHUNK):
            size = min(ENQUEUE_CHUNK, jobs - first)
            await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def left_in_queue(dsn: str) -> int:
    """Jobs of any status still in PgQueuer's queue table."""
    connection = await asyncpg.connect(dsn)
    try:
        return sum(row.count for row in await Queries(AsyncpgDriver(connection)).queue_size())
    finally:
        await connection.close()


async def drain(dsn: str, consumers: int, batch_size: int) -> dict[str, Any]:
    processed = 0

    async def noop(job: Job) -> None:
        nonlocal processed
        processed += 1

    connections = [await asyncpg.connect(dsn) for _ in range(consumers)]
    managers = []
    for connection in connections:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        manager.entrypoint(ENTRYPOINT)(noop)
        managers.append(manager)
    cpu_before = time.process_time()
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(m.run(batch_size=batch_size, mode=QueueExecutionMode.drain) for m in managers)
        )
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
    finally:
        for connection in connections:
            if not connection.is_closed():
                await connection.close()
    return {"processed": processed, "drain_s": elapsed, "cpu_s": cpu}


async def enqueue_command(args: argparse.Namespace) -> dict[str, Any]:
    await install(args.dsn)
    seconds = await enqueue(args.dsn, args.jobs)
    return {
        "jobs": args.jobs,
        "enqueue_s": round(seconds, 3),
        "enqueue_per_s": round(args.jobs / seconds, 1) if seconds > 0 else None,
        "queued": await left_in_queue(args.dsn),
    }


async def drain_command(args: argparse.Namespace) -> dict[str, Any]:
    result = await drain(args.dsn, args.consumers, args.batch_size)
    remaining = await left_in_queue(args.dsn)
    drained = result["drain_s"]
    return {
        "jobs": args.jobs,
        "consumers": args.consumers,
        "batch_size": args.batch_size,
        "event_loop": args.loop,
        "drain_s": round(drained, 3),
        "jobs_per_s": round(result["processed"] / drained, 1) if drained > 0 else None,
        "cpu_s": round(result["cpu_s"], 3),
        "cpu_us_per_job": round(result["cpu_s"] / args.jobs * 1e6, 1) if args.jobs else None,
        "processed": result["processed"],
        "left_in_queue": remaining,
        "versions": {
            name: importlib.metadata.version(name) for name in ("pgqueuer", "asyncpg", "uvloop")
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Drain N no-op jobs with PgQueuer.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("enqueue", "drain"):
        command = commands.add_parser(name)
        command.add_argument("--dsn", required=True, help="a PostgreSQL database of its own")
        command.add_argument("--jobs", type=int, default=10_000)
        command.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
        if name == "drain":
            command.add_argument("--consumers", type=int, default=5, help="QueueManagers")
            command.add_argument("--batch-size", type=int, default=10, help="jobs per dequeue")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = enqueue_command if args.command == "enqueue" else drain_command
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(command(args))
    else:
        result = asyncio.run(command(args))
    print(json.dumps(result), flush=True)
    if args.command == "enqueue":
        return 0 if result["queued"] == args.jobs else 1
    return 0 if result["processed"] == args.jobs and result["left_in_queue"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
