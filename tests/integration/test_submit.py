"""Submit: what is refused before anything is reserved, and what a queued job holds."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gengate.domain.errors import (
    ContentRejected,
    GengateError,
    InvalidInput,
    NotFound,
    Overloaded,
)
from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from tests.conftest import Caller, new_caller
from tests.integration.support import balances, job_rows, ledger_rows, open_gateway

INITIAL_MICRO = 1000 * 10_000  # the `caller` fixture's 1000 credits


async def assert_untouched(gw: Gateway, caller: Caller) -> None:
    """Nothing reserved, no job, and the ledger holds only the initial credit."""
    money = await balances(gw, caller.principal.account_id)
    assert (money.balance_micro, money.reserved_micro) == (INITIAL_MICRO, 0)
    assert await job_rows(gw, caller.principal.account_id) == []
    assert [row.kind for row in await ledger_rows(gw, caller.principal.account_id)] == ["credit"]


async def refusal(gw: Gateway, caller: Caller, request: SubmitRequest) -> GengateError:
    """The error a submit is refused with; fails the test when it is accepted."""
    try:
        submission = await job_service.submit_job(gw, caller.principal, request)
    except GengateError as error:
        return error
    raise AssertionError(f"{request!r} was accepted as {submission.job.id}")


INVALID_INPUTS: list[tuple[str, Any, str]] = [
    ("echo", {"prompt": "hi", "bogus": 1}, "(root)"),  # unknown fields are refused
    ("echo", {"latency_ms": 5}, "(root)"),  # prompt is required
    ("echo", {"prompt": "hi", "latency_ms": "fast"}, "latency_ms"),
    ("echo", {"prompt": "hi", "latency_ms": 600_001}, "latency_ms"),
    ("echo", {"prompt": ""}, "prompt"),
    ("echo", ["prompt", "hi"], "(root)"),
    ("echo", None, "(root)"),
    ("local-image", {"prompt": "hi", "num_images": 5}, "num_images"),
    ("local-image", {"prompt": "hi", "width": 63}, "width"),
    ("local-image", {"prompt": "hi", "format": "gif"}, "format"),
]


async def test_input_breaking_the_schema_is_refused_before_reserving(
    gateway: Gateway, caller: Caller
) -> None:
    for model, model_input, path in INVALID_INPUTS:
        error = await refusal(gateway, caller, SubmitRequest(model, model_input))
        assert isinstance(error, InvalidInput), (model_input, error)
        assert error.http_status == 422
        assert path in [item["path"] for item in error.details["errors"]], (model_input, error)
    await assert_untouched(gateway, caller)


async def test_content_policy_refuses_without_job_or_reservation(
    gateway: Gateway, caller: Caller
) -> None:
    for prompt in ["a forbidden idea", "FORBIDDEN", "this is forbidden.", "Forbidden fruit"]:
        error = await refusal(gateway, caller, SubmitRequest("echo", {"prompt": prompt}))
        assert isinstance(error, ContentRejected), (prompt, error)
        assert error.http_status == 451
    await assert_untouched(gateway, caller)
    # The word, not a string inside another word.
    submission = await job_service.submit_job(
        gateway, caller.principal, SubmitRequest("echo", {"prompt": "unforbiddenly fine"})
    )
    assert submission.job.status == JobStatus.QUEUED


NON_PUBLIC_WEBHOOKS = [
    "http://127.0.0.1/x",
    "https://10.1.2.3/hook",
    "http://192.168.1.20/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://100.64.0.1/x",
    "http://0.0.0.0/x",
    "ftp://93.184.216.34/x",
    "not a url",
]


async def test_webhook_url_to_a_non_public_target_is_refused(
    gateway: Gateway, caller: Caller
) -> None:
    async def resolver(host: str, port: int) -> list[str]:
        # One public and one private answer: any private address refuses the URL.
        return ["93.184.216.34", "10.0.0.7"] if host == "hooks.example.test" else []

    gateway.resolver = resolver
    for url in [*NON_PUBLIC_WEBHOOKS, "https://hooks.example.test/x", "https://nowhere.test/x"]:
        error = await refusal(
            gateway, caller, SubmitRequest("echo", {"prompt": "hi"}, webhook_url=url)
        )
        assert isinstance(error, InvalidInput), (url, error)
        assert error.details["field"] == "webhook_url"
    await assert_untouched(gateway, caller)


async def test_webhook_url_to_a_public_address_is_kept(gateway: Gateway, caller: Caller) -> None:
    url = "https://93.184.216.34/hooks/gengate"
    submission = await job_service.submit_job(
        gateway,
        caller.principal,
        SubmitRequest("echo", {"prompt": "hi"}, webhook_url=url, webhook_events=["job.succeeded"]),
    )
    stored = await job_service.get_job(
        gateway, caller.principal, job_service.public_job_id(submission.job)
    )
    assert stored.webhook_url == url
    assert stored.webhook_events == ["job.succeeded"]
    assert stored.webhook_status == "pending"


async def test_private_webhook_targets_pass_when_the_operator_allows_them(
    database_url: str, tmp_path: Path
) -> None:
    async with open_gateway(database_url, tmp_path / "data", webhooks_allow_private=True) as gw:
        caller = await new_caller(gw)
        submission = await job_service.submit_job(
            gw,
            caller.principal,
            SubmitRequest("echo", {"prompt": "hi"}, webhook_url="http://127.0.0.1/x"),
        )
        assert submission.job.webhook_url == "http://127.0.0.1/x"
        # Only http(s) is ever allowed, private targets or not.
        with pytest.raises(InvalidInput):
            await job_service.submit_job(
                gw,
                caller.principal,
                SubmitRequest("echo", {"prompt": "hi"}, webhook_url="file:///etc/passwd"),
            )


async def test_unknown_model_is_not_found(gateway: Gateway, caller: Caller) -> None:
    with pytest.raises(NotFound) as refused:
        await job_service.submit_job(
            gateway, caller.principal, SubmitRequest("no-such-model", {"prompt": "hi"})
        )
    assert refused.value.http_status == 404
    await assert_untouched(gateway, caller)


async def test_a_full_queue_answers_overloaded_with_retry_after(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"models": {"echo": {"queue_depth": 3}}}
    async with open_gateway(database_url, tmp_path / "data", **settings) as gw:
        caller = await new_caller(gw)
        queued = [
            await job_service.submit_job(
                gw, caller.principal, SubmitRequest("echo", {"prompt": "q"})
            )
            for _ in range(3)
        ]
        with pytest.raises(Overloaded) as refused:
            await job_service.submit_job(
                gw, caller.principal, SubmitRequest("echo", {"prompt": "q"})
            )
        assert refused.value.http_status == 503
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        # The refused submit reserved nothing and left no job.
        assert (await balances(gw, caller.principal.account_id)).reserved_micro == 3 * 1000
        assert len(await job_rows(gw, caller.principal.account_id)) == 3
        # Another model's queue is separate.
        await job_service.submit_job(
            gw, caller.principal, SubmitRequest("local-image", {"prompt": "q"})
        )
        # Depth counts queued jobs only: once one leaves the queue, there is room again.
        await job_service.cancel_job(gw, caller.principal, job_service.public_job_id(queued[0].job))
        await job_service.submit_job(gw, caller.principal, SubmitRequest("echo", {"prompt": "q"}))


async def test_concurrent_submits_never_push_a_queue_past_its_depth(
    database_url: str, tmp_path: Path
) -> None:
    settings = {"models": {"echo": {"queue_depth": 3}}}
    async with open_gateway(database_url, tmp_path / "data", **settings) as gw:
        callers = [await new_caller(gw, 10, f"account {index}") for index in range(4)]

        async def attempt(index: int) -> bool:
            request = SubmitRequest("echo", {"prompt": f"burst {index}"})
            try:
                await job_service.submit_job(gw, callers[index % 4].principal, request)
            except Overloaded:
                return False
            return True

        accepted = await asyncio.gather(*(attempt(index) for index in range(20)))
        assert sum(accepted) == 3
        assert len(await job_rows(gw)) == 3
        reserved = [(await balances(gw, c.principal.account_id)).reserved_micro for c in callers]
        assert sum(reserved) == 3 * 1000


async def test_defaults_are_filled_into_the_stored_input(gateway: Gateway, caller: Caller) -> None:
    echo = await job_service.submit_job(
        gateway, caller.principal, SubmitRequest("echo", {"prompt": "hi"})
    )
    image = await job_service.submit_job(
        gateway, caller.principal, SubmitRequest("local-image", {"prompt": "hi", "width": 64})
    )
    stored_echo = await job_service.get_job(
        gateway, caller.principal, job_service.public_job_id(echo.job)
    )
    stored_image = await job_service.get_job(
        gateway, caller.principal, job_service.public_job_id(image.job)
    )
    assert stored_echo.input == {
        "prompt": "hi",
        "latency_ms": 0,
        "fail": False,
        "progress_steps": 0,
        "fail_attempts": 0,
    }
    assert stored_image.input == {
        "prompt": "hi",
        "width": 64,
        "height": 512,
        "num_images": 1,
        "format": "png",
    }


async def test_a_queued_job_holds_its_envelope_and_the_model_policy(
    gateway: Gateway, caller: Caller
) -> None:
    config = gateway.catalog.get("echo").config
    tags = [{"key": "team", "value": "red"}]
    submission = await job_service.submit_job(
        gateway,
        caller.principal,
        SubmitRequest(
            "echo",
            {"prompt": "hi"},
            tags=tags,
            metadata={"order": 7},
            priority=5,
            cancel_after_s=30,
        ),
    )
    job = await job_service.get_job(
        gateway, caller.principal, job_service.public_job_id(submission.job)
    )
    assert job.account_id == caller.principal.account_id
    assert (job.status, job.model, job.modality) == ("queued", "echo", "image")
    assert (job.tags, job.metadata, job.priority) == (tags, {"order": 7}, 5)
    assert (job.reserved_micro, job.cost_micro, job.progress) == (1000, 0, 0)
    assert (job.timeout_s, job.max_attempts, job.attempts) == (
        config.timeout_s,
        config.max_attempts,
        0,
    )
    assert job.expires_at - job.created_at == timedelta(seconds=config.queue_ttl_s)
    assert job.cancel_at - job.created_at == timedelta(seconds=30)
    assert job.webhook_url is None and job.webhook_status is None
    assert job.started_at is None and job.completed_at is None
    timed = await job_service.submit_job(
        gateway, caller.principal, SubmitRequest("echo", {"prompt": "hi"}, timeout_s=12)
    )
    assert timed.job.timeout_s == 12
