"""`Client` and `AsyncClient`: the I/O around `BaseClient`.

Each client sends `ApiCall`s through its httpx client (retrying as `BaseClient` decides),
sleeps (`time.sleep` or `anyio.sleep`) and binds records to `Job` or `AsyncJob`. The
two classes mirror each other line for line; everything that could differ between them
lives in `_base`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import httpx
from httpx_sse import EventSource

from gengate.client._base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ApiCall,
    BaseClient,
    EventStreamState,
    PollSchedule,
    check_event_stream,
    connection_error,
    download_target,
    envelope_fields,
    error_from_response,
    job_page,
    job_record,
    output_to_fetch,
    parse_retry_after,
    partial_path,
)
from gengate.client._exceptions import PermissionDeniedError, WaitTimeoutError
from gengate.client._jobs import AsyncJob, Job, JobEvent
from gengate.client._resources import Generate, Jobs

TagsArg = Mapping[str, str] | list[Mapping[str, str]] | None


class Client(BaseClient):
    """The synchronous gengate client.

    `api_key` and `base_url` default to `GENGATE_API_KEY` and `GENGATE_BASE_URL` (then
    `http://127.0.0.1:8000`). `timeout` applies to each request; `max_retries` bounds the
    retries of one call after a connection failure or a 429/503 answer. Pass
    `transport=` (an `httpx.BaseTransport`) or a ready `http_client=` to control how
    requests go out; a given `http_client` is not closed by `close()`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout=timeout, max_retries=max_retries)
        if transport is not None and http_client is not None:
            raise ValueError("pass transport= or http_client=, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(transport=transport, timeout=self.timeout)
        self.generate: Generate[Job] = Generate(self, self._submit)
        self.jobs: Jobs[Job, Iterator[Job]] = Jobs(self, self._submit, self._iter_jobs)

    def run(
        self,
        model: str,
        input: Mapping[str, Any] | None = None,
        *,
        sync: bool = True,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        tags: TagsArg = None,
        metadata: Mapping[str, Any] | None = None,
        priority: int | None = None,
        timeout_s: int | None = None,
        cancel_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """`POST /v1/models/{model}/run`. With `sync` the server holds the answer until
        the job finishes or its sync window (or this client's timeout, less a margin)
        ends; the job returned may still be running then, and `.wait()` finishes the
        wait. With `sync=False` the job comes back queued at once."""
        envelope = envelope_fields(
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            tags=tags,
            metadata=metadata,
            priority=priority,
            timeout_s=timeout_s,
        )
        call = self._run_call(
            model,
            input,
            sync=sync,
            envelope=envelope,
            idempotency_key=idempotency_key,
            cancel_after=cancel_after,
        )
        return self._submit(call)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- I/O -------------------------------------------------------------------------------

    def _send(self, call: ApiCall) -> httpx.Response:
        """Send `call`, retrying as `_retry_delay` allows; a success answer or a typed
        error. A streamed success answer is open: the caller closes it."""
        attempt = 0
        while True:
            try:
                response = self._http.send(self._request(self._http, call), stream=call.stream)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise connection_error(exc, call.url) from exc
            else:
                if response.status_code in call.success:
                    return response
                if call.stream:
                    response.read()
                    response.close()
                delay = self._retry_delay(call, attempt, response=response)
                if delay is None:
                    raise error_from_response(response)
            attempt += 1
            time.sleep(delay)

    def _bind(self, response: httpx.Response) -> Job:
        return Job.from_record(
            self,
            job_record(response),
            etag=response.headers.get("etag"),
            retry_after=parse_retry_after(response),
        )

    def _submit(self, call: ApiCall) -> Job:
        return self._bind(self._send(call))

    def _iter_jobs(self, params: tuple[tuple[str, str], ...]) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            records, cursor = job_page(self._send(self._list_call(params, cursor)))
            for record in records:
                yield Job.from_record(self, record)
            if cursor is None:
                return

    def _poll(self, job: Job) -> Job:
        response = self._send(self._get_job_call(job.id, etag=job._etag))
        if response.status_code == 304:
            return dataclasses.replace(
                job,
                _etag=response.headers.get("etag", job._etag),
                _retry_after=parse_retry_after(response),
            )
        return self._bind(response)

    def _wait_for(self, job: Job, timeout: float | None) -> Job:
        schedule = PollSchedule(timeout, time.monotonic())
        while not job.is_terminal:
            delay = schedule.next_delay(job._retry_after, time.monotonic())
            if delay is None:
                raise WaitTimeoutError(job=job, timeout=timeout or 0.0)
            time.sleep(delay)
            job = self._poll(job)
        return job

    def _job_events(self, job_id: str) -> Iterator[JobEvent[Job]]:
        stream = EventStreamState(self.max_retries, self._rng)
        while True:
            call = self._events_call(job_id, stream.last_event_id)
            response = self._send(call)
            try:
                check_event_stream(response)
                for sse in EventSource(response).iter_sse():
                    record = stream.accept(sse, response)
                    if record is None:
                        continue
                    job = Job.from_record(self, record)
                    yield JobEvent(sse.event, sse.id or None, job)
                    if job.is_terminal:
                        return
                failure: Exception = httpx.RemoteProtocolError("the stream ended early")
            except httpx.TransportError as exc:
                failure = exc
            finally:
                response.close()
            delay = stream.reconnect_delay()
            if delay is None:
                raise connection_error(failure, call.url) from failure
            time.sleep(delay)

    def _download(self, job: Job, path: str | os.PathLike[str], index: int) -> Path:
        try:
            target = download_target(path, job, index)
            return self._save(output_to_fetch(job, index).url or "", target)
        except PermissionDeniedError:
            # The link expired (or the secret key rotated): fresh links come with the job.
            fresh = self.jobs.get(job.id)
            target = download_target(path, fresh, index)
            return self._save(output_to_fetch(fresh, index).url or "", target)

    def _save(self, url: str, target: Path) -> Path:
        part = partial_path(target)
        response = self._send(self._file_call(url))
        try:
            with part.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
            part.replace(target)
        finally:
            response.close()
            part.unlink(missing_ok=True)
        return target


class AsyncClient(BaseClient):
    """The asynchronous gengate client: `Client`'s twin, with coroutines. Use it as
    `async with AsyncClient() as client:`; `transport=` takes an
    `httpx.AsyncBaseTransport`, `http_client=` an `httpx.AsyncClient`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout=timeout, max_retries=max_retries)
        if transport is not None and http_client is not None:
            raise ValueError("pass transport= or http_client=, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(transport=transport, timeout=self.timeout)
        self.generate: Generate[Awaitable[AsyncJob]] = Generate(self, self._submit)
        self.jobs: Jobs[Awaitable[AsyncJob], AsyncIterator[AsyncJob]] = Jobs(
            self, self._submit, self._iter_jobs
        )

    async def run(
        self,
        model: str,
        input: Mapping[str, Any] | None = None,
        *,
        sync: bool = True,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        tags: TagsArg = None,
        metadata: Mapping[str, Any] | None = None,
        priority: int | None = None,
        timeout_s: int | None = None,
        cancel_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncJob:
        """As `Client.run`."""
        envelope = envelope_fields(
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            tags=tags,
            metadata=metadata,
            priority=priority,
            timeout_s=timeout_s,
        )
        call = self._run_call(
            model,
            input,
            sync=sync,
            envelope=envelope,
            idempotency_key=idempotency_key,
            cancel_after=cancel_after,
        )
        return await self._submit(call)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- I/O -------------------------------------------------------------------------------

    async def _send(self, call: ApiCall) -> httpx.Response:
        attempt = 0
        while True:
            try:
                request = self._request(self._http, call)
                response = await self._http.send(request, stream=call.stream)
            except httpx.TransportError as exc:
                delay = self._retry_delay(call, attempt, error=exc)
                if delay is None:
                    raise connection_error(exc, call.url) from exc
            else:
                if response.status_code in call.success:
                    return response
                if call.stream:
                    await response.aread()
                    await response.aclose()
                delay = self._retry_delay(call, attempt, response=response)
                if delay is None:
                    raise error_from_response(response)
            attempt += 1
            await anyio.sleep(delay)

    def _bind(self, response: httpx.Response) -> AsyncJob:
        return AsyncJob.from_record(
            self,
            job_record(response),
            etag=response.headers.get("etag"),
            retry_after=parse_retry_after(response),
        )

    async def _submit(self, call: ApiCall) -> AsyncJob:
        return self._bind(await self._send(call))

    async def _iter_jobs(self, params: tuple[tuple[str, str], ...]) -> AsyncIterator[AsyncJob]:
        cursor: str | None = None
        while True:
            records, cursor = job_page(await self._send(self._list_call(params, cursor)))
            for record in records:
                yield AsyncJob.from_record(self, record)
            if cursor is None:
                return

    async def _poll(self, job: AsyncJob) -> AsyncJob:
        response = await self._send(self._get_job_call(job.id, etag=job._etag))
        if response.status_code == 304:
            return dataclasses.replace(
                job,
                _etag=response.headers.get("etag", job._etag),
                _retry_after=parse_retry_after(response),
            )
        return self._bind(response)

    async def _wait_for(self, job: AsyncJob, timeout: float | None) -> AsyncJob:  # noqa: ASYNC109
        schedule = PollSchedule(timeout, time.monotonic())
        while not job.is_terminal:
            delay = schedule.next_delay(job._retry_after, time.monotonic())
            if delay is None:
                raise WaitTimeoutError(job=job, timeout=timeout or 0.0)
            await anyio.sleep(delay)
            job = await self._poll(job)
        return job

    async def _job_events(self, job_id: str) -> AsyncIterator[JobEvent[AsyncJob]]:
        stream = EventStreamState(self.max_retries, self._rng)
        while True:
            call = self._events_call(job_id, stream.last_event_id)
            response = await self._send(call)
            try:
                check_event_stream(response)
                async for sse in EventSource(response).aiter_sse():
                    record = stream.accept(sse, response)
                    if record is None:
                        continue
                    job = AsyncJob.from_record(self, record)
                    yield JobEvent(sse.event, sse.id or None, job)
                    if job.is_terminal:
                        return
                failure: Exception = httpx.RemoteProtocolError("the stream ended early")
            except httpx.TransportError as exc:
                failure = exc
            finally:
                await response.aclose()
            delay = stream.reconnect_delay()
            if delay is None:
                raise connection_error(failure, call.url) from failure
            await anyio.sleep(delay)

    async def _download(self, job: AsyncJob, path: str | os.PathLike[str], index: int) -> Path:
        try:
            target = download_target(path, job, index)
            return await self._save(output_to_fetch(job, index).url or "", target)
        except PermissionDeniedError:
            fresh = await self.jobs.get(job.id)
            target = download_target(path, fresh, index)
            return await self._save(output_to_fetch(fresh, index).url or "", target)

    async def _save(self, url: str, target: Path) -> Path:
        part = anyio.Path(partial_path(target))
        response = await self._send(self._file_call(url))
        try:
            async with await anyio.open_file(part, "wb") as file:
                async for chunk in response.aiter_bytes():
                    await file.write(chunk)
            await part.replace(target)
        finally:
            await response.aclose()
            await part.unlink(missing_ok=True)
        return target
