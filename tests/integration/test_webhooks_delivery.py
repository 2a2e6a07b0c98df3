"""Webhook delivery end to end inside one process: real jobs finish on real workers, the
delivery loop sends to real HTTP receivers on 127.0.0.1, and the outbox, the attempt
log and the job's `webhook` fields are read back from SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, func, select
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as LibraryVerificationError

from gengate.config import Settings
from gengate.domain.errors import Conflict, NotFound
from gengate.domain.states import JobStatus
from gengate.services import accounts as account_service
from gengate.services import jobs as job_service
from gengate.services import webhooks as webhook_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.services.lifecycle import complete_job
from gengate.store import accounts as account_store
from gengate.store import jobs as job_store
from gengate.store import webhooks as webhook_store
from gengate.store.jobs import JobRow
from gengate.store.schema import jobs, outputs, webhook_deliveries, webhook_messages
from gengate.store.types import utcnow
from gengate.webhooks import WebhookVerificationError, verify
from gengate.webhooks.delivery import DeliveryLoop
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller, fast_settings, new_caller
from tests.integration.support import open_gateway, wait_until
from tests.integration.test_webhooks_receiver import Answer, Receiver, free_port

#: A compressed retry schedule: five retries 0.2 s apart, no jitter.
SCHEDULE = [0, 0.2, 0.2, 0.2, 0.2, 0.2]
PUBLIC_URL = "https://gen.example.test"
WAIT_S = 15.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return fast_settings(
        tmp_path / "data",
        database_url=database_url,
        public_url=PUBLIC_URL,
        webhooks_allow_private=True,
        webhooks_retry_schedule_s=SCHEDULE,
        webhooks_jitter=0.0,
        webhooks_timeout_s=5.0,
    )


@contextlib.asynccontextmanager
async def delivering(gw: Gateway, *, workers: bool = True) -> AsyncIterator[DeliveryLoop]:
    """Workers for every model and a delivery loop, running until the block ends."""
    runtime = WorkerRuntime(gw, list(gw.catalog)) if workers else None
    deliveries = DeliveryLoop(gw)
    if runtime is not None:
        await runtime.start()
    deliveries.start()
    try:
        yield deliveries
    finally:
        if runtime is not None:
            await runtime.stop()
        await deliveries.stop()


async def submit(
    gw: Gateway, caller: Caller, url: str | None, events: list[str] | None = None, **extra: Any
) -> JobRow:
    submission = await job_service.submit_job(
        gw,
        caller.principal,
        SubmitRequest(
            model_id="echo",
            input={"prompt": "webhook test", **extra},
            webhook_url=url,
            webhook_events=events,
        ),
    )
    return submission.job


async def job_row(gw: Gateway, job_id: uuid.UUID) -> JobRow:
    async with gw.db.read() as conn:
        row = await job_store.get_job(conn, job_id)
    assert row is not None
    return row


async def wait_for_webhook(gw: Gateway, job_id: uuid.UUID, status: str) -> JobRow:
    async def reached() -> bool:
        return (await job_row(gw, job_id)).webhook_status == status

    await wait_until(reached, timeout_s=WAIT_S, what=f"webhook {status}")
    return await job_row(gw, job_id)


async def secret_of(gw: Gateway, caller: Caller) -> str:
    async with gw.db.read() as conn:
        account = await account_store.get_account(conn, caller.principal.account_id)
    assert account is not None
    return str(account.webhook_secret)


async def deliveries(gw: Gateway, caller: Caller, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await webhook_service.list_deliveries(gw, caller.principal, f"job_{job_id.hex}")


async def test_a_finished_job_is_delivered_signed_as_standard_webhooks_says(
    gateway: Gateway, caller: Caller
) -> None:
    secret = await secret_of(gateway, caller)
    with Receiver() as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
            done = await wait_for_webhook(gateway, job.id, "delivered")

    # The Standard Webhooks library (not our code) accepts the signature...
    payload = Webhook(secret).verify(request.body, request.headers)
    # ...and refuses it for another body or another secret.
    with pytest.raises(LibraryVerificationError):
        Webhook(secret).verify(request.body + b" ", request.headers)
    with pytest.raises(LibraryVerificationError):
        Webhook(account_service.new_webhook_secret()).verify(request.body, request.headers)

    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["gengate-webhook-attempt"] == "1"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert payload["type"] == "job.succeeded"
    assert payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert data["id"] == f"job_{job.id.hex}"
    assert data["status"] == "succeeded"
    assert data["result"]["url"].startswith(PUBLIC_URL + "/v1/files/")
    assert data["webhook"] == {"url": receiver.url(), "status": "pending", "attempts": 0}

    assert done.webhook_status == "delivered"
    assert done.webhook_attempts == 1
    (logged,) = await deliveries(gateway, caller, job.id)
    assert logged["webhook_id"] == request.headers["webhook-id"]
    assert logged["id"].startswith("whd_")
    assert logged["attempt"] == 1
    assert logged["status_code"] == 200
    assert logged["error"] is None
    assert logged["response_body"] == "ok"
    assert isinstance(logged["latency_ms"], int)
    assert logged["latency_ms"] >= 0


async def test_a_receiver_that_fails_twice_gets_the_same_id_three_times(
    gateway: Gateway, caller: Caller
) -> None:
    # The first answer's body is not text: the log keeps a readable, storable version.
    with Receiver([Answer(500, body=b"down\x00\xff"), Answer(500)]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            done = await wait_for_webhook(gateway, job.id, "delivered")
        requests = receiver.received()

    assert len(requests) == 3
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert [r.headers["gengate-webhook-attempt"] for r in requests] == ["1", "2", "3"]
    assert done.webhook_attempts == 3
    log = await deliveries(gateway, caller, job.id)
    assert [d["status_code"] for d in log] == [500, 500, 200]
    assert [d["attempt"] for d in log] == [1, 2, 3]
    assert log[0]["error"] == "status: answered 500"
    assert log[0]["response_body"] == "down\ufffd\ufffd"
    assert log[2]["error"] is None
    # The schedule spaced the attempts (0.2 s apart here).
    assert requests[1].at - requests[0].at >= 0.15


async def test_only_the_start_of_a_long_answer_is_read_and_kept(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver([Answer(200, body=b"a" * 2000 + b"b" * 200_000)]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            await wait_for_webhook(gateway, job.id, "delivered")
    (logged,) = await deliveries(gateway, caller, job.id)
    assert logged["response_body"] == "a" * 1024


async def test_a_receiver_that_is_down_for_a_while_gets_the_event_once_back(
    gateway: Gateway, caller: Caller
) -> None:
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}/hook"
    async with delivering(gateway):
        job = await submit(gateway, caller, url)

        async def failed_twice() -> bool:
            return len(await deliveries(gateway, caller, job.id)) >= 2

        await wait_until(failed_twice, timeout_s=WAIT_S, what="two failed attempts")
        with Receiver(port=port) as receiver:
            await receiver.wait_for(1, timeout_s=WAIT_S)
            done = await wait_for_webhook(gateway, job.id, "delivered")

    log = await deliveries(gateway, caller, job.id)
    assert log[0]["status_code"] is None
    assert log[0]["error"].startswith("connection: ")
    assert log[-1]["status_code"] == 200
    assert done.webhook_attempts == len(log)


async def test_410_stops_retrying(gateway: Gateway, caller: Caller) -> None:
    with Receiver(default=Answer(410, body=b"unsubscribed")) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            done = await wait_for_webhook(gateway, job.id, "failed")
            # Several schedule steps later, still one request.
            await _sleep(3 * SCHEDULE[1])
        assert len(receiver.received()) == 1
    assert done.webhook_attempts == 1
    (logged,) = await deliveries(gateway, caller, job.id)
    assert logged["status_code"] == 410
    assert logged["error"] == "gone: answered 410; no more attempts"


async def test_a_redirect_is_a_failure_and_is_not_followed(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver() as elsewhere:
        redirect = Answer(302, {"Location": elsewhere.url()})
        with Receiver([redirect]) as receiver:
            async with delivering(gateway):
                job = await submit(gateway, caller, receiver.url())
                done = await wait_for_webhook(gateway, job.id, "delivered")
            assert len(receiver.received()) == 2
        assert elsewhere.received() == []
    first, second = await deliveries(gateway, caller, job.id)
    assert first["status_code"] == 302
    assert first["error"].startswith("redirect: answered 302 to http://127.0.0.1:")
    assert second["status_code"] == 200
    assert done.webhook_attempts == 2


async def test_a_spent_schedule_fails_the_webhook(gateway: Gateway, caller: Caller) -> None:
    with Receiver(default=Answer(503)) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            done = await wait_for_webhook(gateway, job.id, "failed")
            await _sleep(3 * SCHEDULE[1])
        assert len(receiver.received()) == len(SCHEDULE)
    assert done.webhook_attempts == len(SCHEDULE)
    assert [d["status_code"] for d in await deliveries(gateway, caller, job.id)] == [503] * len(
        SCHEDULE
    )


async def test_retry_after_is_honoured(gateway: Gateway, caller: Caller) -> None:
    busy = Answer(503, {"Retry-After": "1"})
    with Receiver([busy]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            await wait_for_webhook(gateway, job.id, "delivered")
        first, second = receiver.received()
    # The schedule alone would have retried after 0.2 s.
    assert second.at - first.at >= 0.95


async def test_an_attempt_that_gets_no_answer_in_time_is_a_timeout(
    database_url: str, tmp_path: Path
) -> None:
    async with open_gateway(
        database_url,
        tmp_path / "data",
        webhooks_allow_private=True,
        webhooks_retry_schedule_s=[0, 0.2],
        webhooks_timeout_s=0.5,
    ) as gw:
        caller = await new_caller(gw)
        with Receiver([Answer(hang_s=30)]) as receiver:
            async with delivering(gw):
                job = await submit(gw, caller, receiver.url())
                done = await wait_for_webhook(gw, job.id, "delivered")
        first, second = await deliveries(gw, caller, job.id)
    assert first["status_code"] is None
    assert first["error"] == "timeout: no answer within 0.5 s"
    assert 450 <= first["latency_ms"] < 5000
    assert second["status_code"] == 200
    assert done.webhook_attempts == 2


async def test_webhook_events_choose_which_events_are_sent(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver() as receiver:
        async with delivering(gateway):
            skipped = await submit(gateway, caller, receiver.url(), ["job.succeeded"], fail=True)
            wanted = await submit(gateway, caller, receiver.url(), ["job.failed"], fail=True)
            (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
            await wait_for_webhook(gateway, wanted.id, "delivered")
            skipped_row = await job_row(gateway, skipped.id)
            await _sleep(0.5)
        assert len(receiver.received()) == 1
    payload = orjson.loads(request.body)
    assert payload["type"] == "job.failed"
    assert payload["data"]["id"] == f"job_{wanted.id.hex}"
    assert payload["data"]["error"]["code"] == "provider_error"
    assert skipped_row.status == "failed"
    assert skipped_row.webhook_status == "skipped"
    assert await deliveries(gateway, caller, skipped.id) == []


async def test_a_cancelled_job_sends_job_cancelled(gateway: Gateway, caller: Caller) -> None:
    with Receiver() as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url(), latency_ms=60_000)
            await job_service.cancel_job(gateway, caller.principal, f"job_{job.id.hex}")
            (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
    payload = orjson.loads(request.body)
    assert payload["type"] == "job.cancelled"
    assert payload["data"]["status"] == "cancelled"


async def test_the_outbox_message_commits_with_the_terminal_transition(
    gateway: Gateway, caller: Caller
) -> None:
    job = await submit(gateway, caller, "http://127.0.0.1:9/hook")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with gateway.db.transaction() as conn:
            done = await complete_job(conn, job.id, JobStatus.CANCELLED, now=utcnow())
            assert done is not None
            assert await webhook_store.message_for_job(conn, job.id) is not None
            raise Abort
    async with gateway.db.read() as conn:
        assert await webhook_store.message_for_job(conn, job.id) is None
        assert (await job_store.get_job(conn, job.id)).status == "queued"  # type: ignore[union-attr]

    async with gateway.db.transaction() as conn:
        await complete_job(conn, job.id, JobStatus.CANCELLED, now=utcnow())
    async with gateway.db.read() as conn:
        message = await webhook_store.message_for_job(conn, job.id)
    assert message is not None
    assert (message.status, message.event_type, message.attempts) == ("pending", "job.cancelled", 0)


async def test_deleting_a_job_deletes_its_webhook_message_and_attempts(
    gateway: Gateway, caller: Caller
) -> None:
    """The job-retention sweep deletes job rows; their webhook rows go with them."""
    with Receiver([Answer(500)]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            await wait_for_webhook(gateway, job.id, "delivered")
    async with gateway.db.transaction() as conn:
        await conn.execute(delete(outputs).where(outputs.c.job_id == job.id))
        await conn.execute(delete(jobs).where(jobs.c.id == job.id))
    async with gateway.db.read() as conn:
        for table in (webhook_messages, webhook_deliveries):
            count = await conn.execute(select(func.count()).select_from(table))
            assert count.scalar_one() == 0


async def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(
    gateway: Gateway, caller: Caller
) -> None:
    old_secret = await secret_of(gateway, caller)
    rotated = await account_service.rotate_webhook_secret(
        gateway.db, caller.account_id, utcnow(), overlap_s=3600
    )
    new_secret = rotated["webhook_secret"]
    assert new_secret != old_secret
    assert new_secret.startswith("whsec_")
    with Receiver() as receiver:
        async with delivering(gateway):
            await submit(gateway, caller, receiver.url())
            (during,) = await receiver.wait_for(1, timeout_s=WAIT_S)
            _shift_clock(gateway, timedelta(hours=2))
            await submit(gateway, caller, receiver.url())
            _, after = await receiver.wait_for(2, timeout_s=WAIT_S)

    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        Webhook(secret).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    # That webhook's timestamp follows the shifted clock: verify as of that moment.
    moment = float(after.headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError):
        verify(after.body, after.headers, old_secret, now=moment)
    assert verify(after.body, after.headers, new_secret, now=moment)["type"] == "job.succeeded"

    with pytest.raises(NotFound):
        await account_service.rotate_webhook_secret(
            gateway.db, f"acct_{uuid.uuid4().hex}", utcnow(), overlap_s=1
        )


async def test_a_manual_retry_sends_the_same_event_again_from_the_start(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver([Answer(410)]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            await wait_for_webhook(gateway, job.id, "failed")
            row = await webhook_service.retry_webhook(
                gateway, caller.principal, f"job_{job.id.hex}"
            )
            assert row.webhook_status == "pending"
            done = await wait_for_webhook(gateway, job.id, "delivered")
        first, second = receiver.received()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.headers["gengate-webhook-attempt"] == "2"
    assert done.webhook_attempts == 2
    assert [d["status_code"] for d in await deliveries(gateway, caller, job.id)] == [410, 200]


async def test_a_manual_retry_needs_a_finished_job_with_a_webhook(
    gateway: Gateway, caller: Caller
) -> None:
    without = await submit(gateway, caller, None)
    running = await submit(gateway, caller, "http://127.0.0.1:9/hook", latency_ms=60_000)
    for job, message in ((without, "no webhook_url"), (running, "is queued")):
        with pytest.raises(Conflict, match=message):
            await webhook_service.retry_webhook(gateway, caller.principal, f"job_{job.id.hex}")
    stranger = await new_caller(gateway, name="stranger")
    for action in (webhook_service.retry_webhook, webhook_service.list_deliveries):
        with pytest.raises(NotFound):
            await action(gateway, stranger.principal, f"job_{running.id.hex}")  # type: ignore[operator]
        with pytest.raises(NotFound):
            await action(gateway, caller.principal, "job_not-an-id")  # type: ignore[operator]


async def test_a_dead_deliverers_claim_is_taken_over_when_its_lease_ends(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver() as receiver:
        job = await submit(gateway, caller, receiver.url())
        async with gateway.db.transaction() as conn:
            await complete_job(conn, job.id, JobStatus.CANCELLED, now=utcnow())
        # A process claims the message and dies before sending it.
        async with gateway.db.transaction() as conn:
            (claimed,) = await webhook_store.claim_messages(
                conn, limit=10, lease_ttl=webhook_service.lease_ttl(gateway), now=utcnow()
            )
        async with delivering(gateway, workers=False):
            await _sleep(1.0)
            assert receiver.received() == []  # the claim still holds
            _shift_clock(gateway, webhook_service.lease_ttl(gateway))
            (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
            await wait_for_webhook(gateway, job.id, "delivered")
    assert request.headers["webhook-id"] == f"msg_{claimed.id.hex}"
    assert request.headers["gengate-webhook-attempt"] == "2"


async def test_a_loop_that_stops_hands_its_attempts_back_at_once(
    gateway: Gateway, caller: Caller
) -> None:
    with Receiver([Answer(hang_s=30)]) as receiver:
        async with delivering(gateway):
            job = await submit(gateway, caller, receiver.url())
            await receiver.wait_for(1, timeout_s=WAIT_S)
        # Stopped mid-attempt: the message is due now, the attempt not counted or logged.
        async with gateway.db.read() as conn:
            message = await webhook_store.message_for_job(conn, job.id)
        assert message is not None
        assert (message.status, message.attempts, message.lease_expires_at) == ("pending", 0, None)
        assert message.next_attempt_at <= utcnow()
        assert await deliveries(gateway, caller, job.id) == []
        # The next loop sends it without waiting for a lease to end.
        started = time.monotonic()
        async with delivering(gateway, workers=False):
            _, again = await receiver.wait_for(2, timeout_s=WAIT_S)
            await wait_for_webhook(gateway, job.id, "delivered")
        assert time.monotonic() - started < webhook_service.lease_ttl(gateway).total_seconds()
    assert again.headers["gengate-webhook-attempt"] == "1"


async def test_many_loops_on_one_database_deliver_each_message_once(
    gateway: Gateway, caller: Caller, settings: Settings
) -> None:
    jobs_count = 30
    with Receiver() as receiver:
        async with contextlib.AsyncExitStack() as stack:
            others = [await stack.enter_async_context(_gateway_like(settings)) for _ in range(2)]
            for other in others:
                await stack.enter_async_context(delivering(other, workers=False))
            async with delivering(gateway):
                for _ in range(jobs_count):
                    await submit(gateway, caller, receiver.url())
                await receiver.wait_for(jobs_count, timeout_s=30)
                await _sleep(1.0)  # time for any duplicate to show up
        ids = [r.headers["webhook-id"] for r in receiver.received()]
    assert len(ids) == jobs_count
    assert len(set(ids)) == jobs_count


# -- helpers ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _gateway_like(settings: Settings) -> AsyncIterator[Gateway]:
    """Another gateway on the same database: what another process would be."""
    gw = await Gateway.open(settings)
    try:
        yield gw
    finally:
        await gw.close()


def _shift_clock(gw: Gateway, by: timedelta) -> None:
    original: Callable[[], datetime] = gw.clock
    gw.clock = lambda: original() + by


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
