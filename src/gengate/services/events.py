"""Live job events: what the event streams of SPEC §2 send, and when.

    GET /v1/jobs/{id}/events   job_stream       one job, up to and including its terminal event
    GET /v1/events             account_stream   every job of an account, until the client leaves

A stream sends what the database says, never what a notification says: a notification
(from this process, or from another one through the PostgreSQL relay) only wakes it up,
and a timer (`events_poll_interval_s`) wakes it as well, so a lost notification costs
latency, never an event. A stream that reads slower than a job changes sends the latest
record, never a stale one: changes between two reads merge into one event.

Event ids let a reconnecting client say what it already has (`Last-Event-ID`):

- a job stream's id is the job's row `version` (`"7"`), which grows with every change;
  a resumed stream sends the current record only when it is newer, so nothing repeats;
- the account stream's id is `t<milliseconds>`, the latest change time it has sent; a
  resumed stream sends the current record of the newest jobs changed since then (a few
  seconds earlier, to allow for clocks and slow commits), so it may repeat a little and
  misses changes of older jobs that finished while the client was away (best effort).

This module knows nothing of HTTP; `api/routes/events.py` renders the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass

from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.store import jobs as job_store
from gengate.store.jobs import JobFilters, JobRow

#: The event name of a change of a running job that stays running (progress, scenes).
PROGRESS = "progress"
#: The account stream re-reads this many of the account's newest jobs on every poll.
ACCOUNT_WINDOW = 50
#: Jobs outside the window that the account stream has seen active and re-reads on
#: every poll; past this many, the oldest are left to notifications alone.
MAX_FOLLOWED = 1000
#: How far before its `Last-Event-ID` a resumed account stream looks for changes.
RESUME_MARGIN_MS = 5000
#: The longest id that can be ours; anything longer is ignored, not parsed.
MAX_EVENT_ID_CHARS = 32


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event: `name` is the job's status, or `progress` for a running job that
    changed and is still running; `id` is what the client sends back in Last-Event-ID."""

    name: str
    id: str
    job: JobRow
    queue_position: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An event id without an event: the account stream is caught up to `id`. Sent once
    the stream is open, so that a client knows from when on it misses nothing (and
    lists the jobs only then), and has an id to resume from even if nothing changes."""

    id: str


def event_name(row: JobRow, previous_status: str | None) -> str:
    if row.status == JobStatus.RUNNING and previous_status == JobStatus.RUNNING:
        return PROGRESS
    return str(row.status)


def _number(text: str, prefix: str = "") -> int | None:
    """The non-negative integer in `<prefix><digits>`, or None (not an id of ours)."""
    text = text.strip()
    if len(text) > MAX_EVENT_ID_CHARS or not text.startswith(prefix):
        return None
    digits = text.removeprefix(prefix)
    if not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def seen_version(last_event_id: str | None) -> int | None:
    """The job row version a client already has, from a job stream's event id."""
    return None if last_event_id is None else _number(last_event_id)


def resume_point_ms(last_event_id: str | None) -> int | None:
    """The change time (ms since the epoch) an account stream's client had reached."""
    return None if last_event_id is None else _number(last_event_id, "t")


def changed_ms(row: JobRow) -> int:
    return int(row.updated_at.timestamp() * 1000)


async def _read_job(gw: Gateway, job_id: uuid.UUID) -> JobRow | None:
    async with gw.db.read() as conn:
        return await job_store.get_job(conn, job_id)


# -- one job ------------------------------------------------------------------------------


async def job_stream(
    gw: Gateway, principal: Principal, job_id: str, *, last_event_id: str | None
) -> AsyncGenerator[JobEvent, None]:
    """The events of one of the caller's jobs. Raises NotFound now, before anything is
    streamed, for a job that is not the caller's (or does not exist)."""
    row = await job_service.get_job(gw, principal, job_id)
    return _follow_job(gw, row.id, seen_version(last_event_id))


async def _follow_job(
    gw: Gateway, job_id: uuid.UUID, seen: int | None
) -> AsyncGenerator[JobEvent, None]:
    poll_s = gw.settings.events_poll_interval_s
    previous_status: str | None = None
    # Watch first, then read: a change committed between the two still wakes the loop.
    with gw.notifier.watch_job(job_id) as changed:
        row = await _read_job(gw, job_id)
        # A version above the job's own is not an id this stream gave out: start afresh.
        if row is not None and seen is not None and seen > row.version:
            seen = None
        while row is not None:
            if seen is None or row.version > seen:
                position = await job_service.queue_position(gw, row)
                yield JobEvent(event_name(row, previous_status), str(row.version), row, position)
                seen, previous_status = row.version, row.status
            if JobStatus(row.status).is_terminal:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_s)
            changed.clear()
            row = await _read_job(gw, job_id)


# -- all jobs of an account -----------------------------------------------------------------


@dataclass(slots=True)
class _Sent:
    version: int
    status: str


class AccountStreamState:
    """What one account stream has sent: each job's last version and status (to send
    only changes, and to name them), and the latest change time (its event id)."""

    def __init__(self) -> None:
        self.sent: dict[uuid.UUID, _Sent] = {}
        self.watermark_ms = 0

    def remember(self, row: JobRow) -> None:
        self.sent[row.id] = _Sent(row.version, row.status)
        self.watermark_ms = max(self.watermark_ms, changed_ms(row))

    def event_for(self, row: JobRow) -> JobEvent | None:
        """The event for this record, or None when the stream has sent it already."""
        before = self.sent.get(row.id)
        if before is not None and row.version <= before.version:
            return None
        name = event_name(row, before.status if before is not None else None)
        self.remember(row)
        return JobEvent(name, f"t{self.watermark_ms}", row)

    def followed(self, window: set[uuid.UUID]) -> list[uuid.UUID]:
        """Active jobs outside the newest-jobs window, newest first, at most MAX_FOLLOWED."""
        active = sorted(
            (
                job_id
                for job_id, sent in self.sent.items()
                if job_id not in window and not JobStatus(sent.status).is_terminal
            ),
            reverse=True,
        )
        return active[:MAX_FOLLOWED]

    def forget_settled(self, keep: set[uuid.UUID]) -> None:
        """Drop finished jobs outside `keep`, so a long-lived stream stays small; such a
        job's next change comes with a notification and is sent as new."""
        for job_id in [j for j, s in self.sent.items() if j not in keep]:
            if JobStatus(self.sent[job_id].status).is_terminal:
                del self.sent[job_id]


def _in_change_order(rows: Iterable[JobRow]) -> list[JobRow]:
    return sorted(rows, key=lambda row: (row.updated_at, row.id))


async def account_stream(
    gw: Gateway, principal: Principal, *, last_event_id: str | None
) -> AsyncGenerator[JobEvent | Checkpoint, None]:
    """Every change of the caller's jobs, from now on (or, resuming, since the last
    event id, best effort), after a first `Checkpoint`; never ends on its own."""
    since_ms = resume_point_ms(last_event_id)
    account_id = principal.account_id
    poll_s = gw.settings.events_poll_interval_s
    loop = asyncio.get_running_loop()
    state = AccountStreamState()
    with gw.notifier.watch_account(account_id) as watch:
        rows = await _poll_account(gw, account_id, state, watch.take())
        for row in _in_change_order(rows):
            # A fresh stream starts from what is there now (the client lists the jobs
            # itself); a resumed one first sends what changed since its event id.
            if since_ms is not None and changed_ms(row) >= since_ms - RESUME_MARGIN_MS:
                event = state.event_for(row)
                if event is not None:
                    yield event
            else:
                state.remember(row)
        state.watermark_ms = max(state.watermark_ms, int(gw.clock().timestamp() * 1000))
        yield Checkpoint(f"t{state.watermark_ms}")
        next_poll = loop.time() + poll_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.changed.wait(), max(0.0, next_poll - loop.time()))
            notified = watch.take()
            if loop.time() >= next_poll:
                rows = await _poll_account(gw, account_id, state, notified)
                next_poll = loop.time() + poll_s
            else:
                rows = await _read_jobs(gw, account_id, notified)
            for row in _in_change_order(rows):
                event = state.event_for(row)
                if event is not None:
                    yield event


async def _poll_account(
    gw: Gateway, account_id: uuid.UUID, state: AccountStreamState, notified: set[uuid.UUID]
) -> list[JobRow]:
    """The account's newest jobs, the active jobs outside them that the stream has
    seen, and the jobs just notified; finished jobs outside these are forgotten."""
    async with gw.db.read() as conn:
        newest = list(
            await job_store.list_jobs(
                conn, account_id=account_id, filters=JobFilters(), before=None, limit=ACCOUNT_WINDOW
            )
        )
    window = {row.id for row in newest}
    others = await _read_jobs(gw, account_id, {*state.followed(window), *notified} - window)
    state.forget_settled(window | {row.id for row in others})
    return newest + others


async def _read_jobs(
    gw: Gateway, account_id: uuid.UUID, job_ids: Iterable[uuid.UUID]
) -> list[JobRow]:
    rows = []
    async with gw.db.read() as conn:
        for job_id in job_ids:
            row = await job_store.get_job(conn, job_id, account_id=account_id)
            if row is not None:
                rows.append(row)
    return rows
