"""The FastAPI application factory. The lifespan opens the gateway and, in `serve`,
starts the in-process workers, the maintenance sweeps and the webhook delivery loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gengate import __version__
from gengate.api.dashboard.routes import router as dashboard_router
from gengate.api.errors import install_error_handlers
from gengate.api.middleware import RequestContextMiddleware
from gengate.api.openapi import install_openapi
from gengate.api.ratelimit import RateLimiter
from gengate.api.routes import (
    account,
    assets,
    events,
    files,
    health,
    jobs,
    models,
    submit,
    uploads,
    webhooks,
)
from gengate.config import Settings
from gengate.metrics import Metrics
from gengate.services.gateway import Gateway
from gengate.webhooks.delivery import DeliveryLoop
from gengate.worker.maintenance import Maintenance
from gengate.worker.runtime import WorkerRuntime

DESCRIPTION = """A self-hostable gateway for asynchronous AI-generation jobs.

Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`. Every error
has the shape `{"error", "message", "details", "request_id"}`."""


def create_app(settings: Settings, *, run_workers: bool = True) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gw = await Gateway.open(settings, metrics=metrics)
        app.state.gateway = gw
        maintenance = Maintenance(gw)
        runtime = WorkerRuntime(gw, list(gw.catalog)) if run_workers else None
        app.state.worker_runtime = runtime
        deliveries = DeliveryLoop(gw) if settings.webhooks_deliver else None
        try:
            if runtime is not None:
                await runtime.start()
            maintenance.start()
            if deliveries is not None:
                deliveries.start()
            yield
        finally:
            if runtime is not None:
                await runtime.stop()
            if deliveries is not None:
                await deliveries.stop()
            await maintenance.stop()
            await gw.close()

    app = FastAPI(
        title="gengate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    policy = settings.rate_limit_policy
    app.state.rate_limiter = RateLimiter(policy) if policy is not None else None
    app.state.expects_workers = run_workers
    app.state.worker_runtime = None
    install_error_handlers(app)
    install_openapi(app)
    # The most frequent requests (polling a job) first: routes are matched in order.
    for module in (jobs, submit, models, account, files, assets, uploads, health, webhooks):
        app.include_router(module.router)
    app.include_router(events.router)
    app.include_router(dashboard_router)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        access_log=settings.access_log,
        # Multipart uploads carry a file of up to max_upload_bytes plus the form framing.
        body_limits={"/v1/uploads": settings.max_upload_bytes + 65_536},
    )
    return app
