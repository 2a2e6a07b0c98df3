"""The context a provider sees while generating one job (`GenerationContext`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from gengate.domain.ids import format_id, new_uuid
from gengate.outbound.media import MediaPolicy, MediaRefused, fetch_media
from gengate.providers.base import (
    InputMedia,
    InputUnavailableError,
    InvalidInputError,
    SavedOutput,
)
from gengate.services.gateway import Gateway
from gengate.services.notifications import JobChange
from gengate.services.uploads import open_upload
from gengate.store import jobs as job_store
from gengate.store.jobs import JobRow

T = TypeVar("T")
EXTENSIONS = {
    "image/png": "png",
    "image/webp": "webp",
    "image/jpeg": "jpg",
    "video/mp4": "mp4",
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "model/gltf-binary": "glb",
}


class JobContext:
    def __init__(
        self, gw: Gateway, row: JobRow, *, cpu_limiter: CapacityLimiter, logger: logging.Logger
    ) -> None:
        self._gw = gw
        self._row = row
        self._cpu_limiter = cpu_limiter
        self.job_id = format_id("job", row.id)
        self.input: Mapping[str, Any] = dict(row.input)
        self.attempt = int(row.attempts)
        self.lease_token = int(row.lease_token)
        self.cancelled = asyncio.Event()
        self.stop = threading.Event()
        self.logger = logging.LoggerAdapter(logger, {"job_id": self.job_id, "model": row.model})
        self.outputs: list[SavedOutput] = []
        self._progress: tuple[int, int | None, int | None] | None = None
        self._last_flush = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_tasks: set[asyncio.Task[None]] = set()
        # One progress write at a time: on PostgreSQL two overlapping writes could commit
        # out of order and leave an older `scenes_completed` as the last word.
        self._flush_lock = asyncio.Lock()
        # The latest scene counts reported, for the final write (progress is throttled).
        self.scenes_completed: int | None = None
        self.scenes_total: int | None = None

    # -- progress, throttled before it touches the database --------------------------

    def progress(
        self,
        percent: float,
        *,
        scenes_completed: int | None = None,
        scenes_total: int | None = None,
    ) -> None:
        self._progress = (max(0, min(100, int(percent))), scenes_completed, scenes_total)
        if scenes_completed is not None:
            self.scenes_completed = scenes_completed
        if scenes_total is not None:
            self.scenes_total = scenes_total
        if self._flush_handle is not None:
            return
        interval = self._gw.settings.progress_interval_s
        delay = max(0.0, self._last_flush + interval - time.monotonic())
        self._flush_handle = asyncio.get_running_loop().call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self._flush())
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _flush(self) -> None:
        async with self._flush_lock:
            if self._progress is None:
                return
            percent, completed, total = self._progress
            self._progress = None
            self._last_flush = time.monotonic()
            async with self._gw.db.transaction() as conn:
                updated = await job_store.update_progress(
                    conn,
                    self._row.id,
                    lease_token=self.lease_token,
                    progress=percent,
                    scenes_completed=completed,
                    scenes_total=total,
                    now=self._gw.clock(),
                )
        if updated:
            row = self._row
            self._gw.notifier.job_changed(JobChange(row.id, row.account_id, row.model, "running"))

    async def close(self) -> None:
        """Stop progress writes (the final transition supersedes them)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for task in list(self._flush_tasks):
            task.cancel()
        await asyncio.gather(*self._flush_tasks, return_exceptions=True)

    # -- outputs -----------------------------------------------------------------------

    async def save_output(
        self,
        data: bytes,
        content_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        duration_sec: float | None = None,
    ) -> SavedOutput:
        extension = EXTENSIONS.get(content_type) or (
            mimetypes.guess_extension(content_type) or ".bin"
        ).lstrip(".")
        index = len(self.outputs)
        key = f"{self._row.id.hex}/{self.attempt}-{index}.{extension}"
        # The name a download is saved under (S3 keeps it with the object).
        filename = f"{self.job_id}-{index}.{extension}"
        await self._gw.storage.put(key, data, content_type, filename=filename)
        saved = SavedOutput(
            output_id=format_id("out", new_uuid()),
            storage_key=key,
            content_type=content_type,
            bytes=len(data),
            width=width,
            height=height,
            duration_sec=duration_sec,
        )
        self.outputs.append(saved)
        return saved

    async def discard_outputs(self) -> None:
        for output in self.outputs:
            try:
                await self._gw.storage.delete(output.storage_key)
            except OSError:
                self.logger.warning("could not delete %s", output.storage_key)
        self.outputs.clear()

    # -- input media ----------------------------------------------------------------------

    async def fetch_input(self, url: str, *, field: str, accept: Collection[str]) -> InputMedia:
        settings = self._gw.settings
        policy = MediaPolicy(
            allow_private=settings.media_allow_private,
            max_bytes=settings.media_max_bytes,
            timeout_s=settings.media_fetch_timeout_s,
            resolver=self._gw.resolver,
        )
        try:
            media = await fetch_media(
                url,
                field=field,
                accept=accept,
                policy=policy,
                open_own=functools.partial(open_upload, self._gw),
            )
        except MediaRefused as refused:
            if refused.transient:
                raise InputUnavailableError(refused.message) from None
            raise InvalidInputError(refused.message) from None
        return InputMedia(media.data, media.content_type)

    # -- CPU work, off the event loop ---------------------------------------------------

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(
            functools.partial(fn, *args, stop=self.stop), limiter=self._cpu_limiter
        )
