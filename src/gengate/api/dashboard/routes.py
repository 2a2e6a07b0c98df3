"""Serves the dashboard: `GET /dashboard` (the page) and its few static files.

The page is public and holds no data. It asks for an API key, keeps it in the tab's
sessionStorage only, and sends it in the `Authorization` header of its own API calls,
including the account's event stream, which it reads with `fetch` (an `EventSource`
cannot send headers, and a key must never travel in a URL). No build step and no CDN:
plain HTML, CSS and JavaScript modules, read from the package once per process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header
from starlette.responses import Response

from gengate.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

PAGE = "index.html"
MEDIA_TYPES = {
    PAGE: "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "glb-viewer.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Scripts and styles only from here (no inline code, so injected markup cannot run);
# API calls to this server; previews from wherever the output links point (signed
# links here, or presigned links of an S3 bucket).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob: https: http:",
        "media-src 'self' blob: https: http:",
        "connect-src 'self' https: http:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


@functools.cache
def static_file(name: str) -> StaticFile:
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return StaticFile(body, MEDIA_TYPES[name], f'"{hashlib.sha256(body).hexdigest()[:20]}"')


def _serve(name: str, if_none_match: str | None) -> Response:
    asset = static_file(name)
    # Revalidated on every load (a cheap 304), so an upgraded server is seen at once.
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
    if if_none_match is not None and asset.etag in if_none_match:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=200)]


@router.get("/dashboard")
async def dashboard_page(if_none_match: IfNoneMatch = None) -> Response:
    return _serve(PAGE, if_none_match)


@router.get("/dashboard/{name}")
async def dashboard_file(name: str, if_none_match: IfNoneMatch = None) -> Response:
    if name == PAGE or name not in MEDIA_TYPES:
        raise NotFound(f"No dashboard file {name[:80]!r}.")
    return _serve(name, if_none_match)
