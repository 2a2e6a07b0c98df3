"""Reading, listing and cancelling jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response

from gengate.api.deps import Caller, CallerDep
from gengate.api.links import links_for
from gengate.api.params import parse_tag_filters
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, JobList, JobRecord, JobStatusName, documented
from gengate.domain.errors import InvalidRequest
from gengate.domain.states import JobStatus
from gengate.services import jobs as job_service
from gengate.services.records import etag, render_job
from gengate.store.jobs import JobFilters

router = APIRouter(tags=["jobs"])


def etag_matches(if_none_match: str, etag: str) -> bool:
    """`If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `W/` is ignored,
    and `*` matches any current representation."""
    wanted = {candidate.strip().removeprefix("W/") for candidate in if_none_match.split(",")}
    return "*" in wanted or etag.removeprefix("W/") in wanted


@router.get(
    "/v1/jobs/{id}",
    summary="Get a job",
    response_model=None,
    responses={
        200: {"model": JobRecord},
        304: {"description": "Not modified"},
        **documented(*AUTHED),
    },
)
async def get_job(
    id: str,
    request: Request,
    caller: CallerDep,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
) -> Response:
    """The job record. Sends an `ETag`; `If-None-Match` with an unchanged job answers 304.
    Jobs not yet finished carry a `Retry-After` poll hint."""
    gw, principal = caller.gw, caller.principal
    row = await job_service.get_job(gw, principal, id)
    links = links_for(gw, request)
    tag = etag(row, links)
    headers = {"ETag": tag}
    hint = job_service.retry_after_hint(row)
    if hint is not None:
        headers["Retry-After"] = str(hint)
    if if_none_match is not None and etag_matches(if_none_match, tag):
        return Response(status_code=304, headers=headers)
    position = await job_service.queue_position(gw, row)
    return json_response(render_job(row, links, queue_position=position), headers=headers)


@router.get(
    "/v1/jobs",
    summary="List jobs",
    response_model=None,
    responses={200: {"model": JobList}, **documented(*AUTHED)},
)
async def list_jobs(
    request: Request,
    caller: CallerDep,
    status: JobStatusName | None = None,
    modality: Annotated[str | None, Query(max_length=32)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[list[str] | None, Query(description="key:value (repeatable)")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The account's jobs, newest first, with keyset pagination (`cursor`)."""
    gw, principal = caller.gw, caller.principal
    filters = JobFilters(
        status=JobStatus(status) if status else None,
        modality=modality,
        model=model,
        tags=parse_tag_filters(tag),
        created_after=_aware(created_after),
        created_before=_aware(created_before),
    )
    page = await job_service.list_jobs(gw, principal, filters, cursor=cursor, limit=limit)
    links = links_for(gw, request)
    return json_response(
        {
            "jobs": [
                render_job(row, links, queue_position=page.positions.get(row.id))
                for row in page.jobs
            ],
            "has_more": page.has_more,
            "cursor": page.cursor,
        }
    )


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidRequest("Timestamps need a time zone (e.g. 2026-01-01T00:00:00Z).")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest("The timestamp is out of range.") from None


async def _cancel(id: str, request: Request, caller: Caller) -> Response:
    row = await job_service.cancel_job(caller.gw, caller.principal, id)
    return json_response(render_job(row, links_for(caller.gw, request)))


CANCEL_RESPONSES = {200: {"model": JobRecord}, **documented(*AUTHED, 409)}


@router.post(
    "/v1/jobs/{id}/cancel", summary="Cancel a job", response_model=None, responses=CANCEL_RESPONSES
)
async def cancel_job(id: str, request: Request, caller: CallerDep) -> Response:
    """Cancel a queued or running job (nothing is charged). A finished job answers 409."""
    return await _cancel(id, request, caller)


@router.delete(
    "/v1/jobs/{id}", summary="Cancel a job", response_model=None, responses=CANCEL_RESPONSES
)
async def delete_job(id: str, request: Request, caller: CallerDep) -> Response:
    """The same as `POST /v1/jobs/{id}/cancel`."""
    return await _cancel(id, request, caller)
