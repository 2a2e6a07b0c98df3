"""The delivery loop: claims due webhook messages and sends them, a bounded number at
once, each attempt in its own task.

    claim (due messages, ≤ free slots) ──► attempt task: render + sign, vet the address,
         ▲ wake-up: a job became terminal      POST to the vetted IP, log the attempt and
         │ here or (PostgreSQL) elsewhere,     schedule the next one (one short
         │ or the next message comes due       transaction, under the claim's token)
         └──────────────── slot freed ◄────────┘

It runs in every `serve` and `worker` process (unless `webhooks_deliver` is off), and
any number may run at once on one database: claims never hand one message to two loops,
and a loop that dies leaves claims that come due again when their lease ends.

Delivery never runs inside a job's transaction or a worker's run: a slow or dead
receiver costs one of this loop's slots for at most `webhooks_timeout_s`, and nothing
else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import uuid

import httpcore

from gengate.domain.errors import InvalidInput
from gengate.domain.states import JobStatus
from gengate.outbound.address_guard import check_url
from gengate.services import webhooks as webhook_service
from gengate.services.gateway import Gateway
from gengate.services.notifications import JobChange
from gengate.store.types import AnyRow
from gengate.webhooks import transport

logger = logging.getLogger("gengate.webhooks")


class DeliveryLoop:
    def __init__(
        self,
        gw: Gateway,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.gw = gw
        self.concurrency = gw.settings.webhooks_concurrency
        self._ssl_context = ssl_context or httpcore.default_ssl_context()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._attempts: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        return len(self._attempts)

    def start(self) -> None:
        self.gw.notifier.add_listener(self._on_job_change)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        """Stop claiming and interrupt attempts in flight; their messages are handed back
        (due at once) so that the next process to run a loop sends them."""
        self._stopping = True
        self.gw.notifier.remove_listener(self._on_job_change)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        attempts = list(self._attempts.values())
        for task in attempts:
            task.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)

    def _on_job_change(self, change: JobChange) -> None:
        # A terminal change may have queued a message (or a retry reset one).
        if JobStatus(change.status).is_terminal:
            self._wake.set()

    async def _loop(self) -> None:
        poll_s = self.gw.settings.poll_interval_s
        while not self._stopping:
            free = self.concurrency - len(self._attempts)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            try:
                claimed = await webhook_service.claim_due(self.gw, limit=free)
                wait_s = poll_s
                if len(claimed) < free:
                    due_in = await webhook_service.seconds_until_due(self.gw)
                    if due_in is not None:
                        wait_s = min(poll_s, due_in)
            except Exception:
                logger.exception("claiming webhook messages failed")
                claimed, wait_s = [], poll_s
            for message in claimed:
                self._attempts[message.id] = asyncio.get_running_loop().create_task(
                    self._attempt(message), name=f"webhook:{message.id}"
                )
            if len(claimed) < free:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(wait_s, 0.001))

    async def _attempt(self, message: AnyRow) -> None:
        try:
            prepared = await webhook_service.prepare_attempt(self.gw, message)
            if prepared is None:
                return  # the job (and so its message) is gone
            try:
                result = await self._send(prepared)
            except Exception:
                # Counted and scheduled like any failed attempt, so that a message that
                # always trips a bug still runs out of retries instead of looping.
                logger.exception(
                    "webhook attempt failed unexpectedly",
                    extra={"webhook_id": webhook_service.webhook_id(message.id)},
                )
                result = webhook_service.AttemptResult(
                    None, 0, "internal: the attempt failed unexpectedly"
                )
            await webhook_service.record_attempt(self.gw, prepared, result, rng=self._rng)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await webhook_service.release_claim(self.gw, message)
            raise
        except Exception:
            # Preparing or recording failed (the database is down?): the claim's lease
            # runs out and the message comes due again, so nothing is lost.
            logger.exception(
                "webhook attempt could not be prepared or recorded",
                extra={"webhook_id": webhook_service.webhook_id(message.id)},
            )
        finally:
            self._attempts.pop(message.id, None)
            self._slot_freed.set()

    async def _send(
        self, prepared: webhook_service.PreparedAttempt
    ) -> webhook_service.AttemptResult:
        """Vet the URL's addresses now (they may differ from submit time), then POST to
        exactly those."""
        settings = self.gw.settings
        try:
            target = await check_url(
                prepared.message.url,
                field="webhook_url",
                allow_private=settings.webhooks_allow_private,
                resolver=self.gw.resolver,
            )
        except InvalidInput as refused:
            return webhook_service.AttemptResult(
                status_code=None, latency_ms=0, error=f"address_refused: {refused.message}"
            )
        sent = await transport.post(
            target,
            body=prepared.body,
            headers=prepared.headers,
            timeout_s=settings.webhooks_timeout_s,
            ssl_context=self._ssl_context,
        )
        if sent.status_code is None:
            return webhook_service.AttemptResult(None, sent.latency_ms, sent.error)
        return webhook_service.answer_result(
            sent.status_code, sent.latency_ms, sent.headers, sent.body, self.gw.clock()
        )
