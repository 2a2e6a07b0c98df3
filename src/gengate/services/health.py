"""Readiness and the database-backed gauges of /metrics."""

from __future__ import annotations

from sqlalchemy import text

from gengate.services.gateway import Gateway
from gengate.store import jobs as job_store
from gengate.store.migrate import schema_is_current


async def database_checks(gw: Gateway) -> dict[str, bool]:
    """Whether the database answers and its schema is current."""
    checks = {"database": False, "schema": False}
    try:
        async with gw.db.read() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = True
        checks["schema"] = await schema_is_current(gw.db)
    except Exception:
        pass
    return checks


async def refresh_job_gauges(gw: Gateway) -> None:
    """Set the queued/running gauges of every model from the database."""
    async with gw.db.read() as conn:
        counts = {(r.model, r.status): r.n for r in await job_store.active_counts(conn)}
    models = set(gw.catalog.ids()) | {model for model, _ in counts}
    for model in models:
        for status in ("queued", "running"):
            gw.metrics.jobs.labels(model, status).set(counts.get((model, status), 0))
