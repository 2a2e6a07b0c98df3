"""Notifications: job changes (for sync waits, cancelling running tasks, event streams)
and queue wake-ups (for idle workers).

They are hints, never the source of truth: every waiter re-reads the database after
a wake-up and also polls on a timer, so a lost notification only costs latency.
In cluster mode a relay (PostgreSQL LISTEN/NOTIFY) carries them between processes:
`job_changed`/`queue_changed` deliver here and send through the relay;
`deliver_*` is what the relay calls with what other processes sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class JobChange:
    job_id: uuid.UUID
    account_id: uuid.UUID
    model: str
    status: str


JobListener = Callable[[JobChange], None]


class AccountWatch:
    """The job changes of one account since its watcher last looked: `changed` is set
    on every change, and `take()` hands over the ids of the jobs that changed."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self._job_ids: set[uuid.UUID] = set()

    def note(self, job_id: uuid.UUID) -> None:
        self._job_ids.add(job_id)
        self.changed.set()

    def take(self) -> set[uuid.UUID]:
        job_ids, self._job_ids = self._job_ids, set()
        self.changed.clear()
        return job_ids


class Relay(Protocol):
    """Carries notifications to the other processes of a deployment."""

    def send_job(self, change: JobChange) -> None: ...

    def send_queue(self, model: str) -> None: ...


class Notifier:
    def __init__(self) -> None:
        self._job_waiters: defaultdict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._queue_events: dict[str, asyncio.Event] = {}
        self._listeners: list[JobListener] = []
        self._account_watches: defaultdict[uuid.UUID, set[AccountWatch]] = defaultdict(set)
        self._relay: Relay | None = None

    def attach_relay(self, relay: Relay | None) -> None:
        self._relay = relay

    def job_changed(self, change: JobChange) -> None:
        self.deliver_job(change)
        if self._relay is not None:
            self._relay.send_job(change)

    def queue_changed(self, model: str) -> None:
        self.deliver_queue(model)
        if self._relay is not None:
            self._relay.send_queue(model)

    def deliver_job(self, change: JobChange) -> None:
        for event in self._job_waiters.get(change.job_id, ()):
            event.set()
        for listener in list(self._listeners):
            listener(change)
        for watch in self._account_watches.get(change.account_id, ()):
            watch.note(change.job_id)

    def deliver_queue(self, model: str) -> None:
        event = self._queue_events.get(model)
        if event is not None:
            event.set()

    def queue_event(self, model: str) -> asyncio.Event:
        """The event a worker for `model` waits on while idle."""
        return self._queue_events.setdefault(model, asyncio.Event())

    @contextlib.contextmanager
    def watch_job(self, job_id: uuid.UUID) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._job_waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._job_waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._job_waiters[job_id]

    @contextlib.contextmanager
    def watch_account(self, account_id: uuid.UUID) -> Iterator[AccountWatch]:
        """Wake-ups for every job change of one account (the account's event stream),
        found by account, so that many open streams cost nothing per foreign change."""
        watch = AccountWatch()
        self._account_watches[account_id].add(watch)
        try:
            yield watch
        finally:
            watches = self._account_watches.get(account_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._account_watches[account_id]

    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: JobListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)
