"""The address guard at delivery time: the URL's host is resolved again for every
attempt, every address is vetted, and the connection goes to a vetted address with the
original Host header, SNI and certificate check. Names resolve through a test resolver
(the gateway's injectable one), so a name can change what it points to between submit
and delivery, as in a DNS-rebinding attack."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme

from gengate.services import webhooks as webhook_service
from gengate.services.gateway import Gateway
from gengate.webhooks.delivery import DeliveryLoop
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller, new_caller
from tests.integration.support import open_gateway, wait_until
from tests.integration.test_webhooks_delivery import submit, wait_for_webhook
from tests.integration.test_webhooks_receiver import Receiver

#: A globally routable address. Nothing here ever connects to it: it is only what a
#: name resolves to at submit, before the name is re-pointed.
PUBLIC_ADDRESS = "93.184.216.34"
WAIT_S = 15.0


class SwitchableResolver:
    """A resolver answering from a table the test can change at any time."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = dict(table)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(-2, "Name or service not known")
        return list(self.table[host])


@contextlib.asynccontextmanager
async def webhook_gateway(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Gateway, Caller]]:
    async with open_gateway(
        database_url,
        tmp_path / "data",
        webhooks_retry_schedule_s=[0, 60],
        webhooks_timeout_s=5.0,
        **overrides,
    ) as gw:
        yield gw, await new_caller(gw)


@contextlib.asynccontextmanager
async def delivering(gw: Gateway, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[None]:
    runtime = WorkerRuntime(gw, list(gw.catalog))
    deliveries = DeliveryLoop(gw, ssl_context=ssl_context)
    await runtime.start()
    deliveries.start()
    try:
        yield
    finally:
        await runtime.stop()
        await deliveries.stop()


async def first_attempt(gw: Gateway, caller: Caller, job_id: Any) -> dict[str, Any]:
    async def attempted() -> bool:
        return bool(
            await webhook_service.list_deliveries(gw, caller.principal, f"job_{job_id.hex}")
        )

    await wait_until(attempted, timeout_s=WAIT_S, what="the first attempt")
    return (await webhook_service.list_deliveries(gw, caller.principal, f"job_{job_id.hex}"))[0]


@pytest.mark.parametrize("private", ["127.0.0.1", "::ffff:127.0.0.1"])
async def test_a_name_that_turns_private_after_submit_is_refused_without_connecting(
    database_url: str, tmp_path: Path, private: str
) -> None:
    resolver = SwitchableResolver({"hooks.rebind.test": [PUBLIC_ADDRESS]})
    async with webhook_gateway(database_url, tmp_path, webhooks_allow_private=False) as (
        gw,
        caller,
    ):
        gw.resolver = resolver
        with Receiver() as receiver:
            # Submit vets the name: it resolves to a public address, so it is accepted.
            job = await submit(gw, caller, receiver.url("hooks.rebind.test"))
            assert resolver.calls == ["hooks.rebind.test"]
            # Before delivery, the name is re-pointed at the receiver on loopback.
            resolver.table["hooks.rebind.test"] = [private]
            async with delivering(gw):
                attempt = await first_attempt(gw, caller, job.id)
            assert receiver.connections == 0
            assert receiver.received() == []
    assert attempt["status_code"] is None
    assert attempt["latency_ms"] == 0
    assert attempt["error"].startswith("address_refused: webhook_url is not allowed: ")
    assert private in attempt["error"]
    assert resolver.calls == ["hooks.rebind.test", "hooks.rebind.test"]


async def test_one_private_address_among_public_ones_is_enough_to_refuse(
    database_url: str, tmp_path: Path
) -> None:
    resolver = SwitchableResolver({"hooks.split.test": [PUBLIC_ADDRESS]})
    async with webhook_gateway(database_url, tmp_path, webhooks_allow_private=False) as (
        gw,
        caller,
    ):
        gw.resolver = resolver
        with Receiver() as receiver:
            job = await submit(gw, caller, receiver.url("hooks.split.test"))
            resolver.table["hooks.split.test"] = [PUBLIC_ADDRESS, "10.1.2.3"]
            async with delivering(gw):
                attempt = await first_attempt(gw, caller, job.id)
            assert receiver.connections == 0
    assert "10.1.2.3" in attempt["error"]


async def test_the_connection_goes_to_the_vetted_address_with_the_original_host(
    database_url: str, tmp_path: Path
) -> None:
    resolver = SwitchableResolver({"hooks.pinned.test": ["127.0.0.1"]})
    async with webhook_gateway(database_url, tmp_path, webhooks_allow_private=True) as (gw, caller):
        gw.resolver = resolver
        with Receiver() as receiver:
            async with delivering(gw):
                job = await submit(gw, caller, receiver.url("hooks.pinned.test", "/in?x=1"))
                (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
                await wait_for_webhook(gw, job.id, "delivered")
    assert request.headers["host"] == f"hooks.pinned.test:{receiver.port}"
    assert request.path == "/in?x=1"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def tls_receiver(authority: trustme.CA, name: str) -> Receiver:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(server_context)
    return Receiver(tls=server_context)


def client_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_https_sends_the_name_as_sni_and_checks_the_certificate_against_it(
    database_url: str, tmp_path: Path, authority: trustme.CA
) -> None:
    resolver = SwitchableResolver({"hooks.tls.test": ["127.0.0.1"]})
    async with webhook_gateway(database_url, tmp_path, webhooks_allow_private=True) as (gw, caller):
        gw.resolver = resolver
        with tls_receiver(authority, "hooks.tls.test") as receiver:
            async with delivering(gw, client_context(authority)):
                job = await submit(gw, caller, receiver.url("hooks.tls.test"))
                (request,) = await receiver.wait_for(1, timeout_s=WAIT_S)
                done = await wait_for_webhook(gw, job.id, "delivered")
            assert receiver.server_names == ["hooks.tls.test"]
    assert request.headers["host"] == f"hooks.tls.test:{receiver.port}"
    assert done.webhook_attempts == 1


async def test_a_certificate_for_another_name_fails_the_attempt(
    database_url: str, tmp_path: Path, authority: trustme.CA
) -> None:
    resolver = SwitchableResolver({"hooks.tls.test": ["127.0.0.1"]})
    async with webhook_gateway(database_url, tmp_path, webhooks_allow_private=True) as (gw, caller):
        gw.resolver = resolver
        with tls_receiver(authority, "someone-else.test") as receiver:
            async with delivering(gw, client_context(authority)):
                job = await submit(gw, caller, receiver.url("hooks.tls.test"))
                attempt = await first_attempt(gw, caller, job.id)
            assert receiver.received() == []
    assert attempt["status_code"] is None
    assert attempt["error"].startswith("connection: ")
    assert "hostname" in attempt["error"].lower() or "certificate" in attempt["error"].lower()
