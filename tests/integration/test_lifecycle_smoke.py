"""The life of one job through the services and the worker runtime."""

from __future__ import annotations

from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.gateway import Gateway
from gengate.services.jobs import SubmitRequest
from gengate.worker.runtime import WorkerRuntime
from tests.conftest import Caller


async def test_echo_job_runs_and_is_charged(gateway: Gateway, caller: Caller) -> None:
    submission = await job_service.submit_job(
        gateway, caller.principal, SubmitRequest("echo", {"prompt": "hi"})
    )
    assert submission.job.status == JobStatus.QUEUED
    runtime = WorkerRuntime(gateway, [gateway.catalog.get("echo")])
    await runtime.start()
    try:
        done = await job_service.wait_for_job(gateway, submission.job, 10)
    finally:
        await runtime.stop()
    assert done.status == JobStatus.SUCCEEDED
    assert done.cost_micro == 1000
