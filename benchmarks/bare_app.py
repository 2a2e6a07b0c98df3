"""A bare Starlette app served by uvicorn: the baseline of `benchmarks/http_api.py`.

It answers the two routes the benchmark drives with a fixed JSON document of the size of
a gengate job record, serialised with orjson on every request (as gengate does):

    GET  /v1/jobs/{id}            the document
    POST /v1/models/{model}/run   reads and parses the JSON body, then the document
    GET  /readyz                  {"status": "ready"}

No auth, no database, no middleware: the cost of uvicorn + Starlette routing + JSON, which
is the floor any FastAPI service on the same server options starts from.

    python benchmarks/bare_app.py --port 8001 [--document record.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: A finished `echo` job as gengate renders it (used when no --document is given).
SAMPLE_RECORD: dict[str, Any] = {
    "object": "job",
    "id": "job_0197c0ffee0000000000000000000000",
    "status": "succeeded",
    "model": "echo",
    "modality": "image",
    "input": {
        "prompt": "bench",
        "latency_ms": 0,
        "fail": False,
        "progress_steps": 0,
        "fail_attempts": 0,
    },
    "progress": 100,
    "scenes_completed": None,
    "scenes_total": None,
    "queue_position": None,
    "priority": 0,
    "attempts": 1,
    "result": {
        "url": "http://127.0.0.1:8000/v1/files/outputs/0197c0ffee0000000000000000000000/"
        "0.png?expires=1767229200&sig=0123456789abcdef0123456789abcdef0123456789abcdef",
        "outputs": [
            {
                "url": "http://127.0.0.1:8000/v1/files/outputs/0197c0ffee0000000000000000000000/"
                "0.png?expires=1767229200&sig=0123456789abcdef0123456789abcdef0123456789abcdef",
                "asset_id": "out_0197c0ffee0000000000000000000001",
                "content_type": "image/png",
                "bytes": 180,
                "width": 64,
                "height": 64,
                "duration_sec": None,
                "expires_at": "2026-01-01T01:00:00Z",
                "expired": False,
            }
        ],
    },
    "cost": {"credits": 0.1, "cost_micro": 1000, "cost_usd": 0.001, "currency": "USD"},
    "error": None,
    "webhook": None,
    "asset_ids": ["out_0197c0ffee0000000000000000000001"],
    "tags": [],
    "metadata": {},
    "created_at": "2026-01-01T00:00:00.000Z",
    "started_at": "2026-01-01T00:00:00.001Z",
    "completed_at": "2026-01-01T00:00:00.003Z",
}


class ORJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_app(document: dict[str, Any] | None = None) -> Starlette:
    record = SAMPLE_RECORD if document is None else document

    async def get_job(request: Request) -> Response:
        return ORJSONResponse(record)

    async def run_model(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return ORJSONResponse({"error": "invalid_request"}, status_code=400)
        if not isinstance(body, dict):
            return ORJSONResponse({"error": "invalid_request"}, status_code=400)
        return ORJSONResponse(record)

    async def ready(request: Request) -> Response:
        return ORJSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/v1/jobs/{id}", get_job, methods=["GET"]),
            Route("/v1/models/{model:path}/run", run_model, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A bare Starlette baseline app.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--document", type=Path, help="JSON file to answer with (default: a sample job record)"
    )
    args = parser.parse_args(argv)
    document = orjson.loads(args.document.read_bytes()) if args.document else None
    # The same options `gengate serve` passes to uvicorn (loop and HTTP parser: auto).
    uvicorn.run(
        create_app(document),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
