"""Whole-database checks after a cluster test: no lost jobs, no double charges, a ledger
that balances to the micro-dollar."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(database_url, query, *args))


def wait_until_all_terminal(database_url: str, *, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = fetch(database_url, "SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counts = {row["status"]: row["n"] for row in rows}
        active = counts.get("queued", 0) + counts.get("running", 0)
        if active == 0 and sum(counts.values()) == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still active after {timeout_s} s: {counts}")
        time.sleep(0.5)


def assert_money_exact(database_url: str) -> dict[str, int]:
    """Every account: credits - charges = balance, nothing reserved, reservations all
    released; every job released once, charged at most once, and charged exactly when it
    succeeded (or was partial), never above its reservation."""
    accounts = fetch(database_url, "SELECT id, balance_micro, reserved_micro FROM accounts")
    for account in accounts:
        sums = {
            row["kind"]: row["total"]
            for row in fetch(
                database_url,
                "SELECT kind, sum(amount_micro) AS total FROM ledger_entries"
                " WHERE account_id = $1 GROUP BY kind",
                account["id"],
            )
        }
        assert sums.get("credit", 0) - sums.get("charge", 0) == account["balance_micro"], sums
        assert account["reserved_micro"] == 0, account
        assert sums.get("reserve", 0) == sums.get("release", 0), sums
    entries = fetch(
        database_url,
        "SELECT job_id, kind, amount_micro FROM ledger_entries WHERE job_id IS NOT NULL",
    )
    per_job = Counter((row["job_id"], row["kind"]) for row in entries)
    assert all(n == 1 for n in per_job.values()), [k for k, n in per_job.items() if n > 1]
    charges = {row["job_id"]: row["amount_micro"] for row in entries if row["kind"] == "charge"}
    jobs = fetch(database_url, "SELECT id, status, cost_micro, reserved_micro FROM jobs")
    for job in jobs:
        assert (job["id"], "release") in per_job, job
        if job["status"] in ("succeeded", "partial"):
            assert charges.get(job["id"]) == job["cost_micro"] <= job["reserved_micro"], job
        else:
            assert job["id"] not in charges, job
    return Counter(job["status"] for job in jobs)


def assert_one_result_per_success(database_url: str) -> None:
    """A job's outputs come from exactly one recorded run: succeeded jobs have their
    output rows once, other jobs none."""
    rows = fetch(
        database_url,
        "SELECT j.id, j.status, count(o.id) AS outputs, count(DISTINCT o.position) AS positions"
        " FROM jobs j LEFT JOIN outputs o ON o.job_id = j.id GROUP BY j.id, j.status",
    )
    for row in rows:
        if row["status"] == "succeeded":
            assert row["outputs"] == row["positions"] == 1, dict(row)
        else:
            assert row["outputs"] == 0, dict(row)
