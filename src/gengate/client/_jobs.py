"""`Job` and `AsyncJob`: a job record bound to the client that fetched it, with the
actions on it (`wait`, `cancel`, `events`, `download`), and `JobEvent`.

A job object is a snapshot: its fields never change. Every action that learns something
new returns a new object (`done = job.wait()`). The actions are thin: the client owns
the I/O.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gengate.client._models import JobRecord

if TYPE_CHECKING:
    from gengate.client._client import AsyncClient, Client

JobT = TypeVar("JobT", bound=JobRecord)


@dataclass(frozen=True)
class JobEvent(Generic[JobT]):
    """One server-sent event of a job: `type` is the status the job moved to or
    `progress`; `id` resumes the stream (`Last-Event-ID`); `job` is the record then."""

    type: str
    id: str | None
    job: JobT


@dataclass(frozen=True, kw_only=True)
class Job(JobRecord):
    """A job, as the sync `Client` last saw it."""

    _client: Client = field(repr=False, compare=False)
    # The validator and poll hint of the answer this record came from, for the next poll.
    _etag: str | None = field(default=None, repr=False, compare=False)
    _retry_after: float | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(
        cls,
        client: Client,
        record: dict[str, Any],
        *,
        etag: str | None = None,
        retry_after: float | None = None,
    ) -> Job:
        fields = JobRecord.fields_from(record)
        return cls(**fields, _client=client, _etag=etag, _retry_after=retry_after)

    def wait(self, timeout: float | None = None) -> Job:
        """Poll until the job is finished and return it (whatever its final status; a
        failed job has its `error`). Waits the server's `Retry-After` between polls, and
        sends the last `ETag` so an unchanged job costs a 304. Raises
        `WaitTimeoutError` after `timeout` seconds (None: no limit)."""
        return self._client._wait_for(self, timeout)

    def cancel(self) -> Job:
        """Cancel the job (nothing is charged); a finished job raises `ConflictError`."""
        return self._client.jobs.cancel(self.id)

    def events(self) -> Iterator[JobEvent[Job]]:
        """The job's server-sent events, up to and including the terminal one. A broken
        stream is resumed from the last event id."""
        return self._client._job_events(self.id)

    def download(self, path: str | os.PathLike[str], *, index: int = 0) -> Path:
        """Save an output file (the primary one by default) to `path`, or into `path`
        when it is a directory, and return where it was written. An expired link is
        renewed once by fetching the job again."""
        return self._client._download(self, path, index)


@dataclass(frozen=True, kw_only=True)
class AsyncJob(JobRecord):
    """A job, as the `AsyncClient` last saw it. Its actions are coroutines."""

    _client: AsyncClient = field(repr=False, compare=False)
    _etag: str | None = field(default=None, repr=False, compare=False)
    _retry_after: float | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(
        cls,
        client: AsyncClient,
        record: dict[str, Any],
        *,
        etag: str | None = None,
        retry_after: float | None = None,
    ) -> AsyncJob:
        fields = JobRecord.fields_from(record)
        return cls(**fields, _client=client, _etag=etag, _retry_after=retry_after)

    # The timeout is part of the API (the twin of `Job.wait`), and unlike a cancel scope
    # it ends in a `WaitTimeoutError` that carries the last record seen.
    async def wait(self, timeout: float | None = None) -> AsyncJob:  # noqa: ASYNC109
        """As `Job.wait`."""
        return await self._client._wait_for(self, timeout)

    async def cancel(self) -> AsyncJob:
        """As `Job.cancel`."""
        return await self._client.jobs.cancel(self.id)

    def events(self) -> AsyncIterator[JobEvent[AsyncJob]]:
        """As `Job.events`, for `async for`."""
        return self._client._job_events(self.id)

    async def download(self, path: str | os.PathLike[str], *, index: int = 0) -> Path:
        """As `Job.download`."""
        return await self._client._download(self, path, index)
