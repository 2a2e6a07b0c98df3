"""The SDK's public surface is exactly what we mean, and importing it loads no server
code: an application installs gengate for the client and must not pay for the server."""

from __future__ import annotations

import json
import subprocess
import sys

import gengate.client
from gengate.client import _exceptions, _jobs, _models

SDK_API = {
    "Client",
    "AsyncClient",
    "Job",
    "AsyncJob",
    "JobEvent",
    "JobRecord",
    "JobResult",
    "JobError",
    "Output",
    "Cost",
    "Tag",
    "WebhookState",
    "GengateError",
    "MissingAPIKeyError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "InvalidInputError",
    "RateLimitError",
    "ContentRejectedError",
    "InternalServerError",
    "ProviderError",
    "OverloadedError",
    "WaitTimeoutError",
    "NoOutputError",
}

# Modules that belong to the server; none may load with the SDK.
SERVER_MODULES = (
    "fastapi",
    "starlette",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "jsonschema",
    "numpy",
    "PIL",
    "typer",
    "gengate.api",
    "gengate.services",
    "gengate.store",
    "gengate.worker",
    "gengate.providers",
    "gengate.storage",
    "gengate.domain",
    "gengate.config",
    "gengate.webhooks.delivery",
)


def test_client_exports_exactly_the_sdk_api() -> None:
    assert set(gengate.client.__all__) == SDK_API
    assert len(gengate.client.__all__) == len(SDK_API)


def test_every_exported_name_is_defined_in_the_package() -> None:
    for name in gengate.client.__all__:
        value = getattr(gengate.client, name)
        assert value.__module__.startswith("gengate.client."), (name, value.__module__)


def test_star_import_gives_the_exported_names() -> None:
    namespace: dict[str, object] = {}
    exec("from gengate.client import *", namespace)
    assert set(namespace) - {"__builtins__"} == SDK_API


def test_every_error_descends_from_one_root_with_a_default_message() -> None:
    errors = [getattr(_exceptions, name) for name in SDK_API if hasattr(_exceptions, name)]
    assert len(errors) == 20
    for error in errors:
        assert issubclass(error, gengate.client.GengateError), error
        assert (error.__doc__ or "").strip(), error
    for error in _exceptions.STATUS_ERRORS:
        assert issubclass(error, gengate.client.APIStatusError)
        assert _exceptions.ERRORS_BY_CODE[error.error_code] is error
        assert _exceptions.ERRORS_BY_STATUS[error.http_status] is error
    assert len(_exceptions.STATUS_ERRORS) == 12
    assert gengate.client.MissingAPIKeyError().message == (
        "No API key: pass api_key= or set GENGATE_API_KEY."
    )


def test_jobs_are_records() -> None:
    assert issubclass(_jobs.Job, _models.JobRecord)
    assert issubclass(_jobs.AsyncJob, _models.JobRecord)


def _loaded_after(statement: str) -> list[str]:
    probe = f"import sys\n{statement}\nimport json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def _server_modules(loaded: list[str]) -> list[str]:
    return [
        m
        for m in loaded
        if m in SERVER_MODULES or m.startswith(tuple(f"{s}." for s in SERVER_MODULES))
    ]


def test_importing_the_sdk_loads_no_server_module() -> None:
    loaded = _loaded_after("from gengate.client import Client, AsyncClient")
    assert "gengate.client" in loaded and "httpx" in loaded
    assert _server_modules(loaded) == []


def test_webhook_verification_is_importable_without_the_server() -> None:
    loaded = _loaded_after("from gengate.webhooks import verify")
    assert "gengate.webhooks.signing" in loaded
    assert _server_modules(loaded) == []
