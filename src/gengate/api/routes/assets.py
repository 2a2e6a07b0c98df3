"""Assets: the output files of the account's jobs, with their jobs' tags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.links import links_for
from gengate.api.params import parse_tag_filters
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, Asset, AssetList, documented
from gengate.domain.errors import InvalidRequest
from gengate.domain.ids import parse_id
from gengate.services import assets as asset_service
from gengate.store.assets import AssetFilters

router = APIRouter(tags=["assets"])


@router.get(
    "/v1/assets",
    summary="List assets",
    response_model=None,
    responses={200: {"model": AssetList}, **documented(*AUTHED)},
)
async def list_assets(
    request: Request,
    caller: CallerDep,
    modality: Annotated[str | None, Query(max_length=32, description="the job's")] = None,
    tag: Annotated[list[str] | None, Query(description="key:value (repeatable)")] = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The account's output files, newest first, with keyset pagination (`cursor`).
    Expired assets (file deleted) are listed too, with `expired: true`."""
    job_uuid = None
    if job_id is not None:
        job_uuid = parse_id("job", job_id)
        if job_uuid is None:
            raise InvalidRequest("job_id is not a job id.", details={"job_id": job_id[:80]})
    filters = AssetFilters(modality=modality, tags=parse_tag_filters(tag), job_id=job_uuid)
    page = await asset_service.list_assets(
        caller.gw, caller.principal, filters, cursor=cursor, limit=limit
    )
    links = links_for(caller.gw, request)
    return json_response(
        {
            "assets": [asset_service.render_asset(row, links) for row in page.assets],
            "has_more": page.has_more,
            "cursor": page.cursor,
        }
    )


@router.get(
    "/v1/assets/{id}",
    summary="Get an asset",
    response_model=None,
    responses={200: {"model": Asset}, **documented(*AUTHED)},
)
async def get_asset(id: str, request: Request, caller: CallerDep) -> Response:
    """One output file with a fresh link (none once expired)."""
    row = await asset_service.get_asset(caller.gw, caller.principal, id)
    return json_response(asset_service.render_asset(row, links_for(caller.gw, request)))


@router.delete(
    "/v1/assets/{id}",
    summary="Delete an asset's file",
    response_model=None,
    responses={200: {"model": Asset}, **documented(*AUTHED)},
)
async def delete_asset(id: str, request: Request, caller: CallerDep) -> Response:
    """Deletes the file now. The asset, and the output in its job's record, then show
    `expired: true` and no link. Deleting again answers the same record."""
    row = await asset_service.delete_asset(caller.gw, caller.principal, id)
    return json_response(asset_service.render_asset(row, links_for(caller.gw, request)))
