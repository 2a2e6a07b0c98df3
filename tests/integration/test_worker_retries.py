"""Provider failures: retryable errors retry with backoff up to `max_attempts`; other
failures fail the job at once. A failed job is never charged."""

from __future__ import annotations

from gengate.domain.states import JobStatus
from gengate.providers.base import GenerationContext, GenerationResult
from gengate.services.gateway import Gateway
from gengate.store.jobs import JobRow
from tests.conftest import Caller
from tests.integration.test_providers import (
    PRICE_MICRO,
    ProbeProvider,
    assert_uncharged,
    install_model,
    ledger_of,
    money,
    running_worker,
    submit,
    wait_for_job,
    wait_for_status,
)

RETRY_BASE_S = 0.2
ECHO_PRICE_MICRO = 1_000  # 0.1 credit


def is_terminal(row: JobRow) -> bool:
    return JobStatus(row.status).is_terminal


async def test_retryable_failures_back_off_then_succeed(gateway: Gateway, caller: Caller) -> None:
    probe = ProbeProvider()
    install_model(gateway, "flaky", probe, retry_base_s=RETRY_BASE_S, retry_cap_s=10)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "flaky", {"label": "j", "retryable_failures": 2})

    async with running_worker(gateway, "flaky"):
        done = await wait_for_job(gateway, job.id, is_terminal, timeout_s=10, what="the end")

    assert done.status == "succeeded"
    assert done.attempts == 3
    assert [start.attempt for start in probe.starts] == [1, 2, 3]
    # The retry after attempt n waits between half and all of base * 2^(n-1).
    first_gap = probe.starts[1].at - probe.starts[0].at
    second_gap = probe.starts[2].at - probe.starts[1].at
    assert first_gap >= RETRY_BASE_S / 2
    assert second_gap >= RETRY_BASE_S
    # ...and a due retry is picked up promptly (liveness, generous bound).
    assert first_gap < RETRY_BASE_S + 2
    assert second_gap < 2 * RETRY_BASE_S + 2
    # Charged once, for the one success.
    assert done.cost_micro == PRICE_MICRO
    assert await ledger_of(gateway, caller, job.id) == {
        "reserve": [PRICE_MICRO],
        "release": [PRICE_MICRO],
        "charge": [PRICE_MICRO],
    }
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - PRICE_MICRO
    assert after.reserved_micro == before.reserved_micro


async def test_retries_stop_at_max_attempts_with_provider_error(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "flaky", probe, retry_base_s=0.02, max_attempts=3)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "flaky", {"label": "j", "retryable_failures": 50})

    async with running_worker(gateway, "flaky"):
        done = await wait_for_job(gateway, job.id, is_terminal, timeout_s=10, what="the end")

    assert done.status == "failed"
    assert done.error["code"] == "provider_error"
    assert done.attempts == 3
    assert [start.attempt for start in probe.starts] == [1, 2, 3]
    await assert_uncharged(gateway, caller, done, before)


async def test_non_retryable_failure_fails_at_once_uncharged(
    gateway: Gateway, caller: Caller
) -> None:
    probe = ProbeProvider()
    install_model(gateway, "fragile", probe, retry_base_s=0.02, max_attempts=3)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "fragile", {"label": "j", "fatal": True})
    assert (await money(gateway, caller)).reserved_micro == before.reserved_micro + PRICE_MICRO

    async with running_worker(gateway, "fragile"):
        done = await wait_for_status(gateway, job.id, "failed", timeout_s=10)

    assert done.error["code"] == "provider_error"
    assert done.error["message"]
    assert done.attempts == 1
    assert len(probe.starts) == 1
    assert done.result is None
    await assert_uncharged(gateway, caller, done, before)


async def test_echo_failure_inputs(gateway: Gateway, caller: Caller) -> None:
    """echo's `fail_attempts` fails retryably that many times; `fail` fails for good."""
    echo = gateway.catalog.get("echo")
    install_model(gateway, "echo-fast-retry", echo.provider, retry_base_s=0.02)
    before = await money(gateway, caller)
    fatal = await submit(gateway, caller, "echo-fast-retry", {"prompt": "p", "fail": True})
    flaky = await submit(gateway, caller, "echo-fast-retry", {"prompt": "p", "fail_attempts": 2})

    async with running_worker(gateway, "echo-fast-retry"):
        failed = await wait_for_job(gateway, fatal.id, is_terminal, timeout_s=10, what="fatal")
        done = await wait_for_job(gateway, flaky.id, is_terminal, timeout_s=10, what="flaky")

    assert (done.status, done.attempts, done.error, done.progress) == ("succeeded", 3, None, 100)
    assert done.cost_micro == ECHO_PRICE_MICRO
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error["code"] == "provider_error"
    assert failed.cost_micro == 0
    assert await ledger_of(gateway, caller, failed.id) == {
        "reserve": [ECHO_PRICE_MICRO],
        "release": [ECHO_PRICE_MICRO],
    }
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - ECHO_PRICE_MICRO
    assert after.reserved_micro == before.reserved_micro


class CrashingProvider(ProbeProvider):
    """Raises something that is not a GenerationError, with a secret in the message."""

    SECRET = "sk-upstream-secret-123"

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        raise RuntimeError(f"connection to https://user:{self.SECRET}@upstream failed")


async def test_unexpected_provider_exception_fails_with_a_sanitized_message(
    gateway: Gateway, caller: Caller
) -> None:
    install_model(gateway, "crashy", CrashingProvider(), retry_base_s=0.02)
    before = await money(gateway, caller)
    job = await submit(gateway, caller, "crashy", {"label": "j"})

    async with running_worker(gateway, "crashy"):
        done = await wait_for_status(gateway, job.id, "failed", timeout_s=10)

    assert done.error["code"] in ("provider_error", "internal_error")
    assert CrashingProvider.SECRET not in done.error["message"]
    assert "Traceback" not in done.error["message"]
    await assert_uncharged(gateway, caller, done, before)
