"""What the sync and async clients share: configuration, how each API call is built,
how answers are read, and every decision about retrying, polling and reconnecting.

`BaseClient` performs no I/O. It turns a method call into an `ApiCall` (method, URL,
body, headers, which answers count as success, whether repeating it is safe) and turns
an `httpx.Response` into a record or a typed error. `Client` and `AsyncClient` only send
calls and sleep, each in its own way, so the two cannot drift apart (the shape of
httpx's own `BaseClient` → `Client` / `AsyncClient`).
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from httpx_sse import ServerSentEvent

from gengate.client._exceptions import (
    ERRORS_BY_CODE,
    ERRORS_BY_STATUS,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    MissingAPIKeyError,
    NoOutputError,
)
from gengate.client._models import JobRecord, Output

__version__ = "0.1.0"

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# The read timeout bounds a sync run too: the client asks the server (`Prefer: wait=N`)
# to answer a few seconds before it would give up itself.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
SYNC_WAIT_MARGIN_S = 5.0
# A server asking for a longer pause than this is better reported than slept through.
MAX_RETRY_AFTER_S = 60.0
# Keep-alive comments arrive every 15 s, so a stream silent for this long is dead.
STREAM_READ_TIMEOUT_S = 60.0

RETRYABLE_STATUSES = frozenset({429, 503})
# Failures before the request left: repeating any call is safe.
NEVER_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures after the request may have reached the server: safe only for repeatable calls
# (reads, and submits, which carry an Idempotency-Key).
IN_FLIGHT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

MODALITY_PATHS = {
    "image": "/v1/images/generations",
    "video": "/v1/videos/generations",
    "music": "/v1/audio/music",
    "speech": "/v1/audio/speech",
    "model3d": "/v1/3d/generations",
    "story": "/v1/stories",
}

_EXTENSIONS = {
    "image/png": ".png",
    "image/webp": ".webp",
    "image/jpeg": ".jpg",
    "video/mp4": ".mp4",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "model/gltf-binary": ".glb",
}


@dataclass(frozen=True)
class ApiCall:
    """One HTTP call as the clients send it, retries included."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Send the API key: every API path, but never a file link (which may be a
    # presigned URL of another host, where an Authorization header breaks it).
    authenticated: bool = True
    # Safe to send again after a failure that may have reached the server.
    repeatable: bool = True
    stream: bool = False
    timeout: httpx.Timeout | None = None
    success: frozenset[int] = frozenset({200})


def parse_retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = datetime.now(moment.tzinfo)
    return max(0.0, (moment - now).total_seconds())


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed error for an error answer: by its `error` code, else by its status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code: str = body["error"]
        message = str(body.get("message") or code)
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        request_id = body.get("request_id") or request_id
    else:
        by_status = ERRORS_BY_STATUS.get(status)
        code = (by_status.error_code if by_status else None) or f"http_{status}"
        message = f"HTTP {status} {response.reason_phrase}".strip()
        details = {}
    cls = ERRORS_BY_CODE.get(code) or ERRORS_BY_STATUS.get(status) or APIStatusError
    return cls(
        message,
        response=response,
        code=code,
        details=details,
        request_id=request_id,
        retry_after=parse_retry_after(response),
    )


def connection_error(exc: Exception, url: str) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"The request to {url} timed out ({exc}).", url=url)
    return APIConnectionError(f"Could not reach {url}: {exc or type(exc).__name__}.", url=url)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or `APIResponseError`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise APIResponseError(
            f"Expected a JSON object from {response.request.url}, got "
            f"{response.headers.get('content-type', 'no content type')}.",
            response=response,
        )
    return body


def job_record(response: httpx.Response) -> dict[str, Any]:
    record = json_object(response)
    if not isinstance(record.get("id"), str) or not isinstance(record.get("status"), str):
        raise APIResponseError("The answer is not a job record.", response=response)
    return record


def job_page(response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
    """The records of one `GET /v1/jobs` page and the cursor of the next (None: last)."""
    body = json_object(response)
    jobs = body.get("jobs")
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise APIResponseError("The answer is not a page of jobs.", response=response)
    cursor = body.get("cursor")
    more = bool(body.get("has_more")) and isinstance(cursor, str) and bool(cursor)
    return jobs, cursor if more else None


def check_event_stream(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if content_type != "text/event-stream":
        raise APIResponseError(
            f"Expected an event stream, got {content_type or 'no content type'}.",
            response=response,
        )


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter in its upper half: 0.5 s, 1 s, 2 s … ≤ 8 s."""
    ceiling = min(8.0, 0.5 * 2.0**attempt)
    return ceiling / 2 + rng.random() * ceiling / 2


class PollSchedule:
    """When `job.wait()` polls next: after the server's `Retry-After` hint when there is
    one, else after a delay that starts short and grows; never past the deadline."""

    FIRST_DELAY_S = 0.25
    GROWTH = 1.5
    MAX_DELAY_S = 5.0
    MAX_HINT_S = 30.0

    def __init__(self, timeout: float | None, now: float) -> None:
        self.deadline = None if timeout is None else now + timeout
        self._delay = self.FIRST_DELAY_S

    def next_delay(self, hint: float | None, now: float) -> float | None:
        """Seconds to sleep before the next poll, or None when time is up."""
        if hint is not None:
            delay = min(hint, self.MAX_HINT_S)
        else:
            delay = self._delay
            self._delay = min(self.MAX_DELAY_S, self._delay * self.GROWTH)
        if self.deadline is None:
            return delay
        remaining = self.deadline - now
        if remaining <= 0:
            return None
        return min(delay, remaining)


class EventStreamState:
    """Where a job's event stream stands: the id to resume from (`Last-Event-ID`), the
    reconnection delay the server asked for (`retry:`), and failed connections in a row."""

    def __init__(self, max_failures: int, rng: random.Random) -> None:
        self.last_event_id: str | None = None
        self.max_failures = max_failures
        self.failures = 0
        self._retry_s: float | None = None
        self._rng = rng

    def accept(self, sse: ServerSentEvent, response: httpx.Response) -> dict[str, Any] | None:
        """The job record an event carries, or None for an event without data."""
        if sse.id:
            self.last_event_id = sse.id
        if sse.retry is not None:
            self._retry_s = sse.retry / 1000
        if not sse.data:
            return None
        try:
            record = json.loads(sse.data)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("status"), str):
            raise APIResponseError(f"An event is not a job record: {sse!r}.", response=response)
        self.failures = 0
        return record

    def reconnect_delay(self) -> float | None:
        """Seconds before reconnecting after the stream broke, or None: give up."""
        self.failures += 1
        if self.failures > self.max_failures:
            return None
        if self._retry_s is not None:
            return self._retry_s
        return backoff_s(self.failures - 1, self._rng)


def tag_list(tags: Any) -> Any:
    """Tags as the wire wants them (`[{"key", "value"}]`); a mapping is accepted too."""
    if isinstance(tags, Mapping):
        return [{"key": str(k), "value": str(v)} for k, v in tags.items()]
    return tags


def envelope_fields(
    *,
    webhook_url: str | None,
    webhook_events: Iterable[str] | None,
    tags: Mapping[str, str] | Iterable[Mapping[str, str]] | None,
    metadata: Mapping[str, Any] | None,
    priority: int | None,
    timeout_s: int | None,
) -> dict[str, Any]:
    """The envelope fields that were given, in their wire form."""
    fields: dict[str, Any] = {}
    if webhook_url is not None:
        fields["webhook_url"] = webhook_url
    if webhook_events is not None:
        fields["webhook_events"] = list(webhook_events)
    if tags is not None:
        fields["tags"] = tag_list(tags)
    if metadata is not None:
        fields["metadata"] = dict(metadata)
    if priority is not None:
        fields["priority"] = priority
    if timeout_s is not None:
        fields["timeout_s"] = timeout_s
    return fields


def output_to_fetch(job: JobRecord, index: int) -> Output:
    """The output `download` fetches, or `NoOutputError`."""
    outputs = job.result.outputs if job.result is not None else ()
    if not outputs:
        raise NoOutputError(f"Job {job.id} is {job.status} and has no output file.")
    if not -len(outputs) <= index < len(outputs):
        raise NoOutputError(f"Job {job.id} has {len(outputs)} output(s), not index {index}.")
    output = outputs[index]
    if output.url is None:
        raise NoOutputError(f"Output {index} of job {job.id} has expired and was deleted.")
    return output


def download_target(path: str | os.PathLike[str], job: JobRecord, index: int) -> Path:
    """Where `download(path)` writes: `path` itself, or a file named after the job and the
    output inside `path` when it is an existing directory."""
    target = Path(path)
    if not target.is_dir():
        return target
    output = output_to_fetch(job, index)
    suffix = Path(urlsplit(output.url or "").path).suffix or _EXTENSIONS.get(
        output.content_type, ""
    )
    position = index % len(job.result.outputs) if job.result else 0
    return target / f"{job.id}-{position}{suffix}"


def partial_path(target: Path) -> Path:
    """A download is written beside its target first, then renamed: never half a file."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")


class BaseClient:
    """Configuration and call building shared by `Client` and `AsyncClient`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        *,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
    ) -> None:
        key = api_key or os.environ.get("GENGATE_API_KEY")
        if not key:
            raise MissingAPIKeyError()
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        self.api_key = key
        self.base_url = (base_url or os.environ.get("GENGATE_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # -- building calls --------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _submit_headers(
        self, idempotency_key: str | None, cancel_after: float | None
    ) -> dict[str, str]:
        # One key per logical submit, reused by every retry of it: that is what makes
        # retrying a submit safe.
        headers = {"Idempotency-Key": idempotency_key or f"gg-sdk-{uuid.uuid4().hex}"}
        if cancel_after is not None:
            headers["Cancel-After"] = f"{cancel_after:g}"
        return headers

    def _run_call(
        self,
        model: str,
        model_input: Mapping[str, Any] | None,
        *,
        sync: bool,
        envelope: dict[str, Any],
        idempotency_key: str | None,
        cancel_after: float | None,
    ) -> ApiCall:
        headers = self._submit_headers(idempotency_key, cancel_after)
        read_timeout = self.timeout.read
        if sync and read_timeout is not None:
            wait_s = max(0, int(read_timeout - SYNC_WAIT_MARGIN_S))
            headers["Prefer"] = f"wait={wait_s}"
        return ApiCall(
            "POST",
            self._url(f"/v1/models/{quote(model, safe='/')}/run"),
            json={"input": dict(model_input or {}), "sync": sync, **envelope},
            headers=headers,
            success=frozenset({200, 202}),
        )

    def _modality_call(
        self,
        modality: str,
        *,
        model: str | None,
        prompt: str | None,
        params: dict[str, Any],
        idempotency_key: str | None,
        cancel_after: float | None,
    ) -> ApiCall:
        body: dict[str, Any] = {}
        if model is not None:
            body["model"] = model
        if prompt is not None:
            body["prompt"] = prompt
        body.update(params)
        if "tags" in body:
            body["tags"] = tag_list(body["tags"])
        return ApiCall(
            "POST",
            self._url(MODALITY_PATHS[modality]),
            json=body,
            headers=self._submit_headers(idempotency_key, cancel_after),
            success=frozenset({200, 202}),
        )

    def _job_path(self, job_id: str) -> str:
        return self._url(f"/v1/jobs/{quote(job_id, safe='')}")

    def _get_job_call(self, job_id: str, *, etag: str | None = None) -> ApiCall:
        if etag is None:
            return ApiCall("GET", self._job_path(job_id))
        return ApiCall(
            "GET",
            self._job_path(job_id),
            headers={"If-None-Match": etag},
            success=frozenset({200, 304}),
        )

    def _cancel_call(self, job_id: str) -> ApiCall:
        # A repeated cancel whose first try went through answers 409, so only failures
        # that happened before sending are retried.
        return ApiCall("POST", self._job_path(job_id) + "/cancel", repeatable=False)

    def _list_params(
        self,
        *,
        status: str | None,
        modality: str | None,
        model: str | None,
        tags: Mapping[str, str] | None,
        created_after: datetime | str | None,
        created_before: datetime | str | None,
        limit: int,
    ) -> tuple[tuple[str, str], ...]:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        for name, value in (("status", status), ("modality", modality), ("model", model)):
            if value is not None:
                params.append((name, value))
        for key, value in (tags or {}).items():
            params.append(("tag", f"{key}:{value}"))
        for name, moment in (("created_after", created_after), ("created_before", created_before)):
            if moment is not None:
                text = moment.isoformat() if isinstance(moment, datetime) else moment
                params.append((name, text))
        return tuple(params)

    def _list_call(self, params: tuple[tuple[str, str], ...], cursor: str | None) -> ApiCall:
        if cursor is not None:
            params = (*params, ("cursor", cursor))
        return ApiCall("GET", self._url("/v1/jobs"), params=params)

    def _events_call(self, job_id: str, last_event_id: str | None) -> ApiCall:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        read = max(self.timeout.read or 0.0, STREAM_READ_TIMEOUT_S)
        return ApiCall(
            "GET",
            self._job_path(job_id) + "/events",
            headers=headers,
            stream=True,
            timeout=httpx.Timeout(self.timeout.connect, read=read),
        )

    def _file_call(self, url: str) -> ApiCall:
        return ApiCall("GET", url, authenticated=False, stream=True)

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: ApiCall) -> httpx.Request:
        headers = {"User-Agent": f"gengate-python/{__version__}", **call.headers}
        if call.authenticated:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if "Accept" not in headers:
            headers["Accept"] = "application/json"
        return http.build_request(
            call.method,
            call.url,
            params=call.params or None,
            json=call.json,
            headers=headers,
            timeout=call.timeout or self.timeout,
        )

    # -- reading answers -------------------------------------------------------------------

    def _retry_delay(
        self,
        call: ApiCall,
        attempt: int,
        *,
        response: httpx.Response | None = None,
        error: Exception | None = None,
    ) -> float | None:
        """Seconds before trying `call` again, or None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if error is not None:
            if isinstance(error, NEVER_SENT_ERRORS) or (
                call.repeatable and isinstance(error, IN_FLIGHT_ERRORS)
            ):
                return backoff_s(attempt, self._rng)
            return None
        if response is None or response.status_code not in RETRYABLE_STATUSES:
            return None
        # A 429 or 503 changed nothing on the server, so any call may be repeated.
        hint = parse_retry_after(response)
        if hint is None:
            return backoff_s(attempt, self._rng)
        return hint if hint <= MAX_RETRY_AFTER_S else None
