"""Webhooks as use-cases: queue a job's event in its terminal transaction, list and
retry an account's deliveries, and the steps of one delivery attempt (claim, prepare,
record) that the delivery loop (`gengate.webhooks.delivery`) runs.

The body is rendered when an attempt is made, not when the event is queued: the job
record then carries fresh output links (links expire, retries run for days) and the
current `webhook` state. The event itself is fixed when queued: its type, its
`timestamp` (the terminal transition) and its id, the `webhook-id` of every attempt.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from gengate import __version__
from gengate.domain.errors import Conflict, NotFound
from gengate.domain.ids import format_id, new_uuid, require_id
from gengate.domain.states import JobStatus
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.services.notifications import JobChange
from gengate.services.records import LinkBuilder, iso, render_job
from gengate.store import accounts as account_store
from gengate.store import jobs as job_store
from gengate.store import webhooks as webhook_store
from gengate.store.database import DbConnection
from gengate.store.jobs import JobRow
from gengate.store.types import AnyRow
from gengate.webhooks.policy import AttemptOutcome, MessageStatus, decide, retry_after_of
from gengate.webhooks.signing import signature_header

logger = logging.getLogger("gengate.webhooks")
WEBHOOK_ID_PREFIX = "msg"
ATTEMPT_HEADER = "gengate-webhook-attempt"
USER_AGENT = f"gengate-webhooks/{__version__}"


def event_type(status: str) -> str:
    """`job.succeeded`, `job.partial`, `job.failed` or `job.cancelled`."""
    return f"job.{status}"


def webhook_id(message_id: uuid.UUID) -> str:
    return format_id(WEBHOOK_ID_PREFIX, message_id)


# -- queueing, inside the terminal transaction -------------------------------------------


async def queue_event(conn: DbConnection, row: JobRow, *, now: datetime) -> JobRow:
    """Called in the transaction that made `row` terminal: write its webhook message to
    the outbox, or mark the webhook `skipped` when `webhook_events` leaves this event
    out. Returns the job as it now is."""
    if row.webhook_url is None:
        return row
    event = event_type(row.status)
    if row.webhook_events and event not in row.webhook_events:
        skipped = await webhook_store.set_job_webhook(
            conn, row.id, status=MessageStatus.SKIPPED.value, attempts=0, now=now
        )
        assert skipped is not None
        return skipped
    await webhook_store.insert_message(
        conn,
        message_id=new_uuid(),
        job_id=row.id,
        account_id=row.account_id,
        event_type=event,
        url=row.webhook_url,
        now=now,
    )
    return row


# -- the account's view: the delivery log and a manual retry ------------------------------


def delivery_view(message: AnyRow, delivery: AnyRow) -> dict[str, Any]:
    return {
        "id": format_id("whd", delivery.id),
        "webhook_id": webhook_id(message.id),
        "event_type": message.event_type,
        "attempt": delivery.attempt,
        "status_code": delivery.status_code,
        "error": delivery.error,
        "latency_ms": delivery.latency_ms,
        "response_body": delivery.response_body,
        "created_at": iso(delivery.created_at),
    }


async def list_deliveries(gw: Gateway, principal: Principal, job_id: str) -> list[dict[str, Any]]:
    """Every attempt to deliver the job's webhook, oldest first ([] when none)."""
    target = require_id("job", job_id, "job")
    async with gw.db.read() as conn:
        job = await job_store.get_job(conn, target, account_id=principal.account_id)
        if job is None:
            raise NotFound(f"No job {job_id[:80]!r}.")
        message = await webhook_store.message_for_job(conn, target)
        if message is None:
            return []
        deliveries = await webhook_store.list_deliveries(conn, message.id)
    return [delivery_view(message, delivery) for delivery in deliveries]


async def retry_webhook(gw: Gateway, principal: Principal, job_id: str) -> JobRow:
    """Send the job's event again: the same message (same `webhook-id`), due now, at
    the start of the retry schedule. 409 when there is nothing to send."""
    target = require_id("job", job_id, "job")
    now = gw.clock()
    async with gw.db.transaction() as conn:
        job = await job_store.get_job(conn, target, account_id=principal.account_id)
        if job is None:
            raise NotFound(f"No job {job_id[:80]!r}.")
        if job.webhook_url is None:
            raise Conflict("The job has no webhook_url.", details={"webhook": None})
        if not JobStatus(job.status).is_terminal:
            raise Conflict(
                f"The job is {job.status}: its webhook is sent once it finishes.",
                details={"status": job.status},
            )
        message = await webhook_store.message_for_job(conn, target)
        if message is None:
            raise Conflict(
                f"The job's webhook_events do not include {event_type(job.status)}.",
                details={"webhook_status": job.webhook_status},
            )
        message = await webhook_store.reset_message(conn, message.id, now=now)
        row = await webhook_store.set_job_webhook(
            conn, target, status=MessageStatus.PENDING.value, attempts=message.attempts, now=now
        )
    assert row is not None
    # Wakes delivery loops here and, through the relay, in the other processes.
    gw.notifier.job_changed(JobChange(row.id, row.account_id, row.model, row.status))
    return row


# -- one delivery attempt -------------------------------------------------------------------


def lease_ttl(gw: Gateway) -> timedelta:
    """How long a claim lasts: the attempt's own deadline plus room to record it."""
    return timedelta(seconds=gw.settings.webhooks_timeout_s + 30)


async def claim_due(gw: Gateway, *, limit: int) -> list[AnyRow]:
    async with gw.db.transaction() as conn:
        return await webhook_store.claim_messages(
            conn, limit=limit, lease_ttl=lease_ttl(gw), now=gw.clock()
        )


async def seconds_until_due(gw: Gateway) -> float | None:
    async with gw.db.read() as conn:
        due = await webhook_store.next_due_at(conn)
    if due is None:
        return None
    return max(0.0, (due - gw.clock()).total_seconds())


def payload_links(gw: Gateway, now: datetime) -> LinkBuilder:
    """Links in webhook bodies: `public_url`, else this process's own address."""
    settings = gw.settings
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return LinkBuilder.create(gw.signer, base, now=now, lifetime_s=settings.link_ttl_s)


@dataclass(frozen=True, slots=True)
class PreparedAttempt:
    message: AnyRow
    body: bytes
    headers: dict[str, str]

    @property
    def attempt(self) -> int:
        return int(self.message.attempts)


async def prepare_attempt(gw: Gateway, message: AnyRow) -> PreparedAttempt | None:
    """The signed request for a claimed message; None when its job no longer exists."""
    now = gw.clock()
    async with gw.db.read() as conn:
        job = await job_store.get_job(conn, message.job_id)
        secrets = await account_store.webhook_secrets(conn, message.account_id, now=now)
    if job is None or not secrets:
        return None
    body = orjson.dumps(
        {
            "type": message.event_type,
            "timestamp": iso(message.created_at),
            "data": render_job(job, payload_links(gw, now)),
        }
    )
    message_id = webhook_id(message.id)
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            body, webhook_id=message_id, timestamp=timestamp, secrets=secrets
        ),
        ATTEMPT_HEADER: str(message.attempts),
    }
    return PreparedAttempt(message, body, headers)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt as the delivery log records it."""

    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str | None = None
    retry_after_s: float | None = None


def _loggable(text: str | None) -> str | None:
    """Text a receiver chose, made safe to store: PostgreSQL text cannot hold NUL."""
    return None if text is None else text.replace("\x00", "\ufffd")


def describe_answer(status_code: int, headers: dict[str, str]) -> str | None:
    """The log's `error` for an answer: None for 2xx, else why it does not count."""
    if 200 <= status_code < 300:
        return None
    if 300 <= status_code < 400:
        location = next((v for k, v in headers.items() if k.lower() == "location"), None)
        where = f" to {location[:200]}" if location else ""
        return f"redirect: answered {status_code}{where}; redirects are not followed"
    if status_code == 410:
        return "gone: answered 410; no more attempts"
    return f"status: answered {status_code}"


async def record_attempt(
    gw: Gateway, prepared: PreparedAttempt, result: AttemptResult, *, rng: random.Random
) -> MessageStatus | None:
    """Log the attempt and move the message (and the job's `webhook`) on: delivered,
    failed, or pending until the next step of the schedule. Returns the new status, or
    None when the claim was taken over meanwhile (the attempt is logged all the same)."""
    message = prepared.message
    now = gw.clock()
    decision = decide(
        AttemptOutcome(result.status_code, result.retry_after_s),
        step=message.schedule_step,
        schedule=gw.settings.webhooks_retry_schedule_s,
        jitter=gw.settings.webhooks_jitter,
        rng=rng,
    )
    next_attempt_at = now + timedelta(seconds=decision.delay_s or 0)
    async with gw.db.transaction() as conn:
        await webhook_store.insert_delivery(
            conn,
            {
                "id": new_uuid(),
                "message_id": message.id,
                "attempt": prepared.attempt,
                "status_code": result.status_code,
                "error": _loggable(result.error),
                "latency_ms": result.latency_ms,
                "response_body": _loggable(result.response_body),
                "created_at": now,
            },
        )
        moved = await webhook_store.record_outcome(
            conn,
            message.id,
            lease_token=message.lease_token,
            status=decision.status.value,
            schedule_step=decision.next_step,
            next_attempt_at=next_attempt_at,
            now=now,
        )
        job = None
        if moved is not None:
            job = await webhook_store.set_job_webhook(
                conn,
                message.job_id,
                status=decision.status.value,
                attempts=prepared.attempt,
                now=now,
            )
    if job is not None:
        # The job record changed (its webhook status): event streams show it.
        gw.notifier.job_changed(JobChange(job.id, job.account_id, job.model, job.status))
    logger.info(
        "webhook attempt %s",
        decision.status.value if moved is not None else "superseded",
        extra={
            "event": "webhook.attempt",
            "job_id": format_id("job", message.job_id),
            "webhook_id": webhook_id(message.id),
            "attempt": prepared.attempt,
            "status_code": result.status_code,
            "latency_ms": result.latency_ms,
            "error": result.error,
            "next_attempt_in_s": decision.delay_s,
        },
    )
    return decision.status if moved is not None else None


async def release_claim(gw: Gateway, message: AnyRow) -> None:
    """Hand an interrupted attempt's message back, due at once."""
    async with gw.db.transaction() as conn:
        await webhook_store.release_claim(
            conn, message.id, lease_token=message.lease_token, now=gw.clock()
        )


def answer_result(
    status_code: int, latency_ms: int, headers: dict[str, str], body: str | None, now: datetime
) -> AttemptResult:
    return AttemptResult(
        status_code=status_code,
        latency_ms=latency_ms,
        error=describe_answer(status_code, headers),
        response_body=body,
        retry_after_s=retry_after_of(headers, now=now),
    )
