"""The gengate Python SDK: submit generation jobs, wait for them, fetch their files.

    from gengate.client import Client

    client = Client()  # GENGATE_API_KEY, GENGATE_BASE_URL
    job = client.generate.image(prompt="a lighthouse at dawn").wait()
    print(job.status, job.url)
    job.download("lighthouse.png")

`AsyncClient` is the same with coroutines. Every error is a `GengateError`; answers of
the server are `APIStatusError`s, one class per error code. This package imports only
httpx, httpx-sse and its own modules, never the server's.
"""

from __future__ import annotations

from gengate.client._client import AsyncClient, Client
from gengate.client._exceptions import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentRejectedError,
    GengateError,
    InsufficientCreditsError,
    InternalServerError,
    InvalidInputError,
    MissingAPIKeyError,
    NoOutputError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    WaitTimeoutError,
)
from gengate.client._jobs import AsyncJob, Job, JobEvent
from gengate.client._models import Cost, JobError, JobRecord, JobResult, Output, Tag, WebhookState

__all__ = [
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "ContentRejectedError",
    "Cost",
    "GengateError",
    "InsufficientCreditsError",
    "InternalServerError",
    "InvalidInputError",
    "Job",
    "JobError",
    "JobEvent",
    "JobRecord",
    "JobResult",
    "MissingAPIKeyError",
    "NoOutputError",
    "NotFoundError",
    "Output",
    "OverloadedError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "Tag",
    "WaitTimeoutError",
    "WebhookState",
]
