"""`client.generate` and `client.jobs`: written once for both clients.

Each namespace builds its calls with the client's `BaseClient` methods and hands them to
a function the client gives it. For `Client` that function returns a `Job`; for
`AsyncClient` it returns an awaitable of an `AsyncJob`, so `await
client.generate.image(...)` works without a second copy of these methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from gengate.client._base import ApiCall, BaseClient

JobT = TypeVar("JobT")
PagesT = TypeVar("PagesT")


class Generate(Generic[JobT]):
    """The modality endpoints. Each method submits one job and returns it at once (the
    server answers 202); call `.wait()` on it for the finished job.

    `model` defaults to the modality's built-in model. Every other keyword is sent as it
    is: the model's input (`width`, `duration`, `seed`, …) and the envelope fields
    (`webhook_url`, `webhook_events`, `tags`, `metadata`, `priority`, `timeout_s`).
    `tags` may be a mapping. `idempotency_key` (one is made when absent) and
    `cancel_after` (seconds) are sent as headers.
    """

    def __init__(self, client: BaseClient, submit: Callable[[ApiCall], JobT]) -> None:
        self._client = client
        self._submit = submit

    def _generate(
        self,
        modality: str,
        model: str | None,
        prompt: str | None,
        idempotency_key: str | None,
        cancel_after: float | None,
        params: dict[str, Any],
    ) -> JobT:
        call = self._client._modality_call(
            modality,
            model=model,
            prompt=prompt,
            params=params,
            idempotency_key=idempotency_key,
            cancel_after=cancel_after,
        )
        return self._submit(call)

    def image(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/images/generations`."""
        return self._generate("image", model, prompt, idempotency_key, cancel_after, params)

    def video(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/videos/generations`."""
        return self._generate("video", model, prompt, idempotency_key, cancel_after, params)

    def music(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/audio/music` (`duration`, `is_instrumental`, `lyrics`, …)."""
        return self._generate("music", model, prompt, idempotency_key, cancel_after, params)

    def speech(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/audio/speech` (`text`, `voice`, …)."""
        return self._generate("speech", model, prompt, idempotency_key, cancel_after, params)

    def model3d(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/3d/generations`."""
        return self._generate("model3d", model, prompt, idempotency_key, cancel_after, params)

    def story(
        self,
        *,
        model: str | None = None,
        prompt: str | None = None,
        idempotency_key: str | None = None,
        cancel_after: float | None = None,
        **params: Any,
    ) -> JobT:
        """`POST /v1/stories` (`scenes`, `narrate`, …)."""
        return self._generate("story", model, prompt, idempotency_key, cancel_after, params)


class Jobs(Generic[JobT, PagesT]):
    """Reading, listing and cancelling jobs."""

    def __init__(
        self,
        client: BaseClient,
        fetch: Callable[[ApiCall], JobT],
        iterate: Callable[[tuple[tuple[str, str], ...]], PagesT],
    ) -> None:
        self._client = client
        self._fetch = fetch
        self._iterate = iterate

    def get(self, id: str) -> JobT:
        """`GET /v1/jobs/{id}`: the job record (`job_…` or the bare UUID)."""
        return self._fetch(self._client._get_job_call(id))

    def cancel(self, id: str) -> JobT:
        """`POST /v1/jobs/{id}/cancel`: cancel a queued or running job. A finished job
        raises `ConflictError` (its `details["status"]` says which status it has)."""
        return self._fetch(self._client._cancel_call(id))

    def list(
        self,
        *,
        status: str | None = None,
        modality: str | None = None,
        model: str | None = None,
        tags: Mapping[str, str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        limit: int = 20,
    ) -> PagesT:
        """Every job matching the filters, newest first, fetched a page of `limit` at a
        time as the iteration reaches it (nothing is fetched before). `tags` matches jobs
        carrying every given key and value; times need a time zone."""
        params = self._client._list_params(
            status=status,
            modality=modality,
            model=model,
            tags=tags,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
        )
        return self._iterate(params)
