"""Liveness, readiness and metrics (public)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gengate.api.deps import GatewayDep
from gengate.api.errors import error_response, request_id_of
from gengate.api.responses import json_response
from gengate.api.schemas import Health, Readiness, documented
from gengate.services import health

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness", response_model=None, responses={200: {"model": Health}})
async def healthz() -> Response:
    """The process answers."""
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=None,
    responses={200: {"model": Readiness}, **documented(503)},
)
async def readyz(request: Request, gw: GatewayDep) -> Response:
    """The database answers, its schema is current, and workers run where expected."""
    checks = {**await health.database_checks(gw), "workers": True}
    runtime = request.app.state.worker_runtime
    if request.app.state.expects_workers:
        checks["workers"] = runtime is not None and runtime.is_running
    if all(checks.values()):
        return json_response({"status": "ready", "checks": checks})
    return error_response(
        request_id_of(request), 503, "overloaded", "Not ready.", {"checks": checks}, retry_after=1
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_model=None,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def metrics(gw: GatewayDep) -> Response:
    await health.refresh_job_gauges(gw)
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
