"""Submit, read, list, cancel and wait for jobs, on behalf of an account."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gengate.domain.content_policy import check_content
from gengate.domain.cursors import decode_cursor, encode_cursor
from gengate.domain.errors import (
    Conflict,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    Overloaded,
)
from gengate.domain.ids import format_id, new_uuid, require_id
from gengate.domain.scheduling import poll_hint_s
from gengate.domain.states import JobStatus
from gengate.outbound.address_guard import check_url
from gengate.outbound.media import MEDIA_URL_FIELDS
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.services.lifecycle import announce, complete_job
from gengate.store import accounts as account_store
from gengate.store import idempotency, ledger
from gengate.store import jobs as job_store
from gengate.store.jobs import JobFilters, JobRow

logger = logging.getLogger("gengate.jobs")
OVERLOADED_RETRY_AFTER_S = 5
WEBHOOK_EVENT_TYPES = ("job.succeeded", "job.partial", "job.failed", "job.cancelled")


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    model_id: str
    input: Any
    webhook_url: str | None = None
    webhook_events: Sequence[str] | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    timeout_s: int | None = None
    cancel_after_s: float | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""
    # The status the answer will have when known now (202 for async submits).
    response_status: int | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    job: JobRow
    replayed: bool = False
    replay_status: int | None = None


async def submit_job(gw: Gateway, principal: Principal, request: SubmitRequest) -> Submission:
    """Validate, reserve credits and enqueue, in one transaction."""
    model = gw.catalog.get(request.model_id)
    model_input = model.validate_input(request.input)
    check_content(model_input)
    if request.webhook_url is not None:
        await check_url(
            request.webhook_url,
            field="webhook_url",
            allow_private=gw.settings.webhooks_allow_private,
            resolver=gw.resolver,
        )
    await check_media_urls(gw, model_input)
    reservation = model.reservation_micro(model_input)
    config = model.config
    now = gw.clock()
    job_id = new_uuid()
    async with gw.db.transaction() as conn:
        if request.idempotency_key is not None:
            held = await idempotency.claim_key(
                conn,
                account_id=principal.account_id,
                key=request.idempotency_key,
                fingerprint=request.fingerprint,
                job_id=job_id,
                response_status=request.response_status,
                now=now,
            )
            if held is not None:
                if held.fingerprint != request.fingerprint:
                    raise Conflict(
                        "This Idempotency-Key was used with a different request body.",
                        details={"idempotency_key": request.idempotency_key},
                    )
                existing = await job_store.get_job(conn, held.job_id)
                assert existing is not None
                return Submission(existing, replayed=True, replay_status=held.response_status)
        depth = await job_store.queued_count(conn, model.id, cap=config.queue_depth)
        if depth >= config.queue_depth:
            raise Overloaded(
                f"The queue of model {model.id!r} is full ({config.queue_depth} jobs).",
                details={"model": model.id, "queue_depth": config.queue_depth},
                retry_after=OVERLOADED_RETRY_AFTER_S,
            )
        if not await ledger.reserve(
            conn, account_id=principal.account_id, job_id=job_id, amount_micro=reservation, now=now
        ):
            account = await account_store.get_account(conn, principal.account_id)
            available = account.balance_micro - account.reserved_micro if account else 0
            raise InsufficientCredits(
                "The available balance is below this job's price.",
                details={"required_micro": reservation, "available_micro": available},
            )
        fair_tag = await job_store.assign_fair_tag(
            conn, model=model.id, account_id=principal.account_id
        )
        row = await job_store.insert_job(
            conn,
            {
                "id": job_id,
                "account_id": principal.account_id,
                "model": model.id,
                "modality": model.modality,
                "status": JobStatus.QUEUED.value,
                "version": 1,
                "input": model_input,
                "priority": request.priority,
                "fair_tag": fair_tag,
                "progress": 0,
                "reserved_micro": reservation,
                "cost_micro": 0,
                "webhook_url": request.webhook_url,
                "webhook_events": (
                    list(request.webhook_events) if request.webhook_events is not None else None
                ),
                "webhook_status": "pending" if request.webhook_url else None,
                "webhook_attempts": 0,
                "tags": request.tags,
                "metadata": request.metadata,
                "timeout_s": min(request.timeout_s or config.timeout_s, config.timeout_s),
                "max_attempts": config.max_attempts,
                "attempts": 0,
                "run_after": now,
                "expires_at": now + timedelta(seconds=config.queue_ttl_s),
                "cancel_at": (
                    now + timedelta(seconds=request.cancel_after_s)
                    if request.cancel_after_s is not None
                    else None
                ),
                "lease_token": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
    announce(gw, row, None)
    return Submission(row)


async def check_media_urls(gw: Gateway, model_input: dict[str, Any]) -> None:
    """Refuse (422) a media URL of the input that the worker could never fetch: a link of
    ours that has expired, or another URL the address guard refuses now. The worker
    checks again when it fetches (names can change what they resolve to)."""
    now = gw.clock()
    for field_name in MEDIA_URL_FIELDS:
        url = model_input.get(field_name)
        if not isinstance(url, str):
            continue
        own = gw.signer.identify(url, now)
        if own is not None:
            # Read from storage by the worker, whatever host the link names.
            if own.expired:
                raise InvalidInput(
                    f"{field_name}: the file link has expired; fetch a fresh one.",
                    details={"field": field_name},
                )
            continue
        await check_url(
            url,
            field=field_name,
            allow_private=gw.settings.media_allow_private,
            resolver=gw.resolver,
        )


async def record_answer(gw: Gateway, principal: Principal, key: str, status: int) -> None:
    """Remember the status a sync submit answered with, for replays of its key."""
    async with gw.db.transaction() as conn:
        await idempotency.record_response_status(
            conn, account_id=principal.account_id, key=key, status=status
        )


async def get_job(gw: Gateway, principal: Principal, job_id: str) -> JobRow:
    async with gw.db.read() as conn:
        row = await job_store.get_job(
            conn, require_id("job", job_id, "job"), account_id=principal.account_id
        )
    if row is None:
        raise NotFound(f"No job {job_id[:80]!r}.")
    return row


async def queue_position(gw: Gateway, row: JobRow) -> int | None:
    if row.status != JobStatus.QUEUED:
        return None
    async with gw.db.read() as conn:
        return await job_store.queue_position(conn, row, now=gw.clock())


async def wait_for_job(gw: Gateway, row: JobRow, timeout_s: float) -> JobRow:
    """The job once terminal, or as it is when `timeout_s` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    with gw.notifier.watch_job(row.id) as changed:
        while not JobStatus(row.status).is_terminal:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, gw.settings.poll_interval_s))
            async with gw.db.read() as conn:
                fresh = await job_store.get_job(conn, row.id)
            assert fresh is not None
            row = fresh
    return row


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobRow]
    has_more: bool
    cursor: str | None
    positions: dict[uuid.UUID, int]


async def list_jobs(
    gw: Gateway, principal: Principal, filters: JobFilters, *, cursor: str | None, limit: int
) -> JobPage:
    before = decode_cursor(cursor) if cursor else None
    async with gw.db.read() as conn:
        rows = list(
            await job_store.list_jobs(
                conn,
                account_id=principal.account_id,
                filters=filters,
                before=before,
                limit=limit + 1,
            )
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        now = gw.clock()
        positions = {
            row.id: await job_store.queue_position(conn, row, now=now)
            for row in rows
            if row.status == JobStatus.QUEUED
        }
    next_cursor = encode_cursor(rows[-1].id) if has_more and rows else None
    return JobPage(rows, has_more, next_cursor, positions)


async def cancel_job(gw: Gateway, principal: Principal, job_id: str) -> JobRow:
    """Cancel a queued or running job (no charge); a terminal job is a conflict."""
    target = require_id("job", job_id, "job")
    now = gw.clock()
    async with gw.db.transaction() as conn:
        current = await job_store.get_job(conn, target, account_id=principal.account_id)
        if current is None:
            raise NotFound(f"No job {job_id[:80]!r}.")
        row = await complete_job(
            conn,
            target,
            JobStatus.CANCELLED,
            now=now,
            only_from={JobStatus.QUEUED, JobStatus.RUNNING},
        )
        if row is None:
            raise Conflict(
                f"The job is already {current.status} and cannot be cancelled.",
                details={"status": current.status},
            )
    announce(gw, row, current.status)
    return row


def retry_after_hint(row: JobRow) -> int | None:
    return poll_hint_s(row.modality, JobStatus(row.status))


def public_job_id(row: JobRow) -> str:
    return format_id("job", row.id)
