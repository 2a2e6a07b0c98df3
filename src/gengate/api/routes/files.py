"""Output files behind signed, expiring links (the signature alone authorises)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import FileResponse, Response

from gengate.api.deps import GatewayDep
from gengate.api.schemas import documented
from gengate.domain.errors import Forbidden, NotFound

router = APIRouter(tags=["files"])
# Outputs are images, video, audio or 3D models, served with their own media type.
FILE_CONTENT = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


@router.get(
    "/v1/files/{key:path}",
    summary="Download an output file",
    response_model=None,
    responses={
        200: {"description": "The file, with its own media type", "content": FILE_CONTENT},
        206: {"description": "Part of the file (Range)", "content": FILE_CONTENT},
        **documented(400, 403, 404, 500),
    },
)
async def get_file(
    key: str,
    gw: GatewayDep,
    expires: Annotated[str | None, Query(max_length=20)] = None,
    sig: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Serves the file when `expires` and `sig` verify; supports HTTP Range requests."""
    if not gw.signer.verify(key, expires, sig, gw.clock()):
        raise Forbidden("The link is invalid or has expired; fetch the job again for a fresh one.")
    path = gw.storage.local_path(key)
    if path is None:
        raise NotFound("The file no longer exists.")
    return FileResponse(
        path, filename=f"{key.replace('/', '-')}", content_disposition_type="inline"
    )
