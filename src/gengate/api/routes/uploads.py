"""Uploads: input files to pass to a model as a media URL (`image_url`, `audio_url`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.links import links_for
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, Upload, documented
from gengate.domain.ids import format_id
from gengate.services import uploads as upload_service

router = APIRouter(tags=["uploads"])


@router.post(
    "/v1/uploads",
    summary="Upload an input file",
    status_code=201,
    response_model=None,
    responses={201: {"model": Upload}, **documented(*AUTHED)},
)
async def create_upload(
    request: Request,
    caller: CallerDep,
    file: Annotated[
        UploadFile,
        File(description="PNG, JPEG, WebP, WAV or MP3, judged by its content"),
    ],
) -> Response:
    """Stores one file (multipart/form-data, field `file`) and answers 201 with a link
    to pass as `image_url` or `audio_url`. Too large: 400; not an accepted type: 422."""
    gw = caller.gw
    # One byte past the limit is enough to tell that the file is too large.
    data = await file.read(gw.settings.max_upload_bytes + 1)
    row = await upload_service.create_upload(gw, caller.principal, data, filename=file.filename)
    return json_response(
        upload_service.render_upload(row, links_for(gw, request)),
        status_code=201,
        headers={"Location": f"/v1/uploads/{format_id('upl', row.id)}"},
    )


@router.get(
    "/v1/uploads/{id}",
    summary="Get an upload",
    response_model=None,
    responses={200: {"model": Upload}, **documented(*AUTHED)},
)
async def get_upload(id: str, request: Request, caller: CallerDep) -> Response:
    """The upload with a fresh link (none once it expired)."""
    row = await upload_service.get_upload(caller.gw, caller.principal, id)
    return json_response(upload_service.render_upload(row, links_for(caller.gw, request)))


@router.delete(
    "/v1/uploads/{id}",
    summary="Delete an upload",
    response_model=None,
    responses={200: {"model": Upload}, **documented(*AUTHED)},
)
async def delete_upload(id: str, request: Request, caller: CallerDep) -> Response:
    """Deletes the file now; the upload then shows `expired: true`. Idempotent."""
    row = await upload_service.delete_upload(caller.gw, caller.principal, id)
    return json_response(upload_service.render_upload(row, links_for(caller.gw, request)))
