"""A job's webhook: its delivery log and a manual retry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.links import links_for
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, JobRecord, WebhookDeliveryList, documented
from gengate.services import webhooks as webhook_service
from gengate.services.records import render_job

router = APIRouter(tags=["webhooks"])


@router.get(
    "/v1/jobs/{id}/webhook-deliveries",
    summary="List a job's webhook deliveries",
    response_model=None,
    responses={200: {"model": WebhookDeliveryList}, **documented(*AUTHED)},
)
async def list_webhook_deliveries(id: str, caller: CallerDep) -> Response:
    """Every attempt to deliver the job's webhook, oldest first: status code, latency,
    error and the start of the receiver's answer. Empty until the first attempt."""
    deliveries = await webhook_service.list_deliveries(caller.gw, caller.principal, id)
    return json_response({"deliveries": deliveries})


@router.post(
    "/v1/jobs/{id}/webhook-deliveries/retry",
    summary="Send a job's webhook again",
    status_code=202,
    response_model=None,
    responses={202: {"model": JobRecord}, **documented(*AUTHED, 409)},
)
async def retry_webhook_delivery(id: str, request: Request, caller: CallerDep) -> Response:
    """Send the job's event again, with the same `webhook-id`, from the start of the
    retry schedule. Answers 202 with the job record (`webhook.status: pending`); 409 when
    the job has no webhook, is not finished, or its `webhook_events` skip its event."""
    row = await webhook_service.retry_webhook(caller.gw, caller.principal, id)
    return json_response(render_job(row, links_for(caller.gw, request)), status_code=202)
