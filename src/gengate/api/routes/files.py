"""Stored files behind signed, expiring links (the signature alone authorises).

Files in the local folder are served here, with HTTP Range support (browsers seek in
video and audio with it). With the S3 backend, links are presigned URLs the bucket
serves; a `/v1/files` link made before a switch to S3 redirects there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.responses import MalformedRangeHeader as _MalformedRange
from starlette.responses import RangeNotSatisfiable as _RangeNotSatisfiable

from gengate.api.deps import GatewayDep
from gengate.api.errors import error_response, request_id_of
from gengate.api.schemas import ErrorBody, documented
from gengate.domain.errors import Forbidden, NotFound
from gengate.store import assets as asset_store

router = APIRouter(tags=["files"])

# The media types stored files have: model outputs and uploads.
FILE_TYPES: dict[str, dict[str, object]] = {
    media_range: {}
    for media_range in ("image/*", "video/*", "audio/*", "model/*", "application/octet-stream")
}


class MediaFileResponse(FileResponse):
    """A file answer that ignores a malformed `Range` header and sends the whole file,
    as RFC 9110 §14.2 allows, instead of Starlette's plain-text 400."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except _MalformedRange:
            return []


def _unsatisfiable(request: Request, size: int) -> bool:
    """True when a range asked for starts at or past the end of the file (416 with
    the error shape, rather than Starlette's empty one). With `If-Range`, the file
    answer itself decides whether the range applies."""
    http_range = request.headers.get("range")
    if http_range is None or "if-range" in request.headers:
        return False
    try:
        MediaFileResponse._parse_range_header(http_range, size)
    except _RangeNotSatisfiable:
        return True
    return False


@router.head("/v1/files/{key:path}", include_in_schema=False)
@router.get(
    "/v1/files/{key:path}",
    summary="Download a stored file",
    response_model=None,
    responses={
        200: {"description": "The file, with its recorded media type", "content": FILE_TYPES},
        206: {
            "description": "Part of the file (Range); several parts as multipart/byteranges",
            "content": {**FILE_TYPES, "multipart/byteranges": {}},
        },
        307: {"description": "The storage backend serves the file (S3): its presigned URL"},
        416: {
            "model": ErrorBody,
            "description": "No requested range overlaps the file (`Content-Range: bytes */size`)",
        },
        **documented(400, 403, 404, 500),
    },
)
async def get_file(
    key: str,
    request: Request,
    gw: GatewayDep,
    # No length limits here: any malformed link is a 403 (the signer checks the form).
    expires: Annotated[str | None, Query()] = None,
    sig: Annotated[str | None, Query()] = None,
) -> Response:
    """Serves the file when `expires` and `sig` verify; supports HTTP Range requests."""
    if not gw.signer.verify(key, expires, sig, gw.clock()):
        raise Forbidden("The link is invalid or has expired; fetch the job again for a fresh one.")
    assert expires is not None
    async with gw.db.read() as conn:
        stored = await asset_store.stored_file(conn, key)
    if stored is None or stored.deleted:
        raise NotFound("The file no longer exists.")
    presigned = gw.storage.presigned_url(key, int(expires))
    if presigned is not None:
        return RedirectResponse(presigned, status_code=307)
    path = gw.storage.local_path(key)
    if path is None:
        raise NotFound("The file no longer exists.")
    stat = path.stat()
    size = stat.st_size
    if _unsatisfiable(request, size):
        answer = error_response(
            request_id_of(request),
            416,
            "invalid_request",
            f"No requested range overlaps the file ({size} bytes).",
            {"size": size},
        )
        answer.headers["Content-Range"] = f"bytes */{size}"
        return answer
    return MediaFileResponse(
        path,
        media_type=stored.content_type,
        filename=stored.filename,
        stat_result=stat,
        content_disposition_type="inline",
    )
