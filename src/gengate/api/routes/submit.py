"""Submitting jobs: `/v1/models/{model}/run` and the modality endpoints."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.links import links_for
from gengate.api.responses import json_response
from gengate.api.schemas import (
    AUTHED,
    Envelope,
    JobRecord,
    ModalityRequest,
    RunRequest,
    documented,
)
from gengate.domain.canonical import request_fingerprint
from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.accounts import Principal
from gengate.services.gateway import Gateway
from gengate.services.jobs import Submission, SubmitRequest
from gengate.services.records import render_job

router = APIRouter(tags=["submit"])

SUBMIT_ERRORS = documented(*AUTHED, 402, 409, 451, 503)
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
CancelAfter = Annotated[float | None, Header(alias="Cancel-After", ge=0, le=30 * 86_400)]
Prefer = Annotated[str | None, Header(alias="Prefer", max_length=200)]

MODALITY_ENDPOINTS = {
    "/v1/images/generations": "image",
    "/v1/videos/generations": "video",
    "/v1/audio/music": "music",
    "/v1/audio/speech": "voice",
    "/v1/3d/generations": "3d",
    "/v1/stories": "story",
}


def _prefer_wait(prefer: str | None) -> float | None:
    match = _PREFER_WAIT.search(prefer or "")
    return float(match.group(1)) if match else None


def _submit_request(
    body: Envelope,
    *,
    model_id: str,
    model_input: Any,
    route: str,
    cancel_after: float | None,
    idempotency_key: str | None,
    response_status: int | None,
) -> SubmitRequest:
    """The service's view of a submit: the envelope's fields, the model's input, and the
    fingerprint of the whole request (route and body) for Idempotency-Key checks."""
    return SubmitRequest(
        model_id=model_id,
        input=model_input,
        webhook_url=body.webhook_url,
        webhook_events=body.webhook_events,
        tags=[tag.model_dump() for tag in body.tags],
        metadata=body.metadata,
        priority=body.priority,
        timeout_s=body.timeout_s,
        cancel_after_s=cancel_after,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(route, body.model_dump(mode="json")),
        response_status=response_status,
    )


async def _job_answer(
    gw: Gateway, request: Request, submission: Submission, status: int, extra: dict[str, str]
) -> Response:
    row = submission.job
    position = await job_service.queue_position(gw, row)
    headers = dict(extra)
    if status == 202:
        headers["Location"] = f"/v1/jobs/{job_service.public_job_id(row)}"
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    record = render_job(row, links_for(gw, request), queue_position=position)
    return json_response(record, status_code=status, headers=headers)


async def _submit_and_wait(
    gw: Gateway,
    request: Request,
    principal: Principal,
    submit: SubmitRequest,
    *,
    wait_s: float,
    headers: dict[str, str],
) -> Response:
    submission = await job_service.submit_job(gw, principal, submit)
    if submission.replayed and submission.replay_status is not None:
        return await _job_answer(gw, request, submission, submission.replay_status, headers)
    row = submission.job
    if wait_s > 0:
        row = await job_service.wait_for_job(gw, row, wait_s)
        submission = Submission(row, submission.replayed, submission.replay_status)
    status = 200 if JobStatus(row.status).is_terminal and wait_s > 0 else 202
    if submit.idempotency_key and submit.response_status is None and not submission.replayed:
        await job_service.record_answer(gw, principal, submit.idempotency_key, status)
    return await _job_answer(gw, request, submission, status, headers)


@router.post(
    "/v1/models/{model:path}/run",
    summary="Run a model",
    response_model=None,
    responses={200: {"model": JobRecord}, 202: {"model": JobRecord}, **SUBMIT_ERRORS},
)
async def run_model(
    model: str,
    body: RunRequest,
    request: Request,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
    cancel_after: CancelAfter = None,
    prefer: Prefer = None,
) -> Response:
    """Submit a job. With `sync` (the default) the request waits up to the model's sync
    window (`Prefer: wait=N` shortens it) and answers 200 with the finished job, or
    202 with the job still running."""
    gw, principal = caller.gw, caller.principal
    target = gw.catalog.get(model)
    headers: dict[str, str] = {}
    wait_s = 0.0
    if body.sync:
        wait_s = target.config.sync_window_s
        asked = _prefer_wait(prefer)
        if asked is not None:
            wait_s = min(wait_s, asked)
            headers["Preference-Applied"] = f"wait={int(wait_s)}"
    submit = _submit_request(
        body,
        model_id=model,
        model_input=body.input,
        route=f"run:{model}",
        cancel_after=cancel_after,
        idempotency_key=idempotency_key,
        response_status=None if body.sync else 202,
    )
    return await _submit_and_wait(gw, request, principal, submit, wait_s=wait_s, headers=headers)


def _modality_route(modality: str) -> Any:
    async def submit_modality(
        body: ModalityRequest,
        request: Request,
        caller: CallerDep,
        idempotency_key: IdempotencyKey = None,
        cancel_after: CancelAfter = None,
    ) -> Response:
        gw, principal = caller.gw, caller.principal
        model = gw.catalog.for_modality(modality, body.model)
        submit = _submit_request(
            body,
            model_id=model.id,
            model_input=dict(body.model_extra or {}),
            route=f"{modality}:{model.id}",
            cancel_after=cancel_after,
            idempotency_key=idempotency_key,
            response_status=202,
        )
        return await _submit_and_wait(gw, request, principal, submit, wait_s=0, headers={})

    submit_modality.__doc__ = (
        f"Submit a {modality} job. `model` defaults to the built-in {modality} model; every "
        "field that is not an envelope field is the model's input. Always answers 202."
    )
    return submit_modality


for path, modality in MODALITY_ENDPOINTS.items():
    router.add_api_route(
        path,
        _modality_route(modality),
        methods=["POST"],
        status_code=202,
        summary=f"Generate ({modality})",
        response_model=None,
        responses={202: {"model": JobRecord}, **SUBMIT_ERRORS},
        name=f"generate_{modality}",
    )
