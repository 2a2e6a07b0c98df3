"""The one place where errors become HTTP responses, all in the SPEC §2 shape:
`{"error", "message", "details", "request_id"}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gengate.api.responses import json_response
from gengate.domain.errors import GengateError, Unauthorized

STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    402: "insufficient_credits",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "invalid_input",
    429: "rate_limited",
    451: "content_rejected",
    500: "internal_error",
    502: "provider_error",
    503: "overloaded",
}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "req_unknown"))


def error_body(code: str, message: str, details: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details, "request_id": request_id}


def error_response(
    request_id: str,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response(
        error_body(code, message, details or {}, request_id), status_code=status, headers=headers
    )


async def _gengate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GengateError)
    response = error_response(
        request_id_of(request), exc.http_status, exc.code, exc.message, exc.details, exc.retry_after
    )
    if isinstance(exc, Unauthorized):
        # RFC 9110 §11.6.1: a 401 names the scheme that would work.
        response.headers["WWW-Authenticate"] = 'Bearer realm="gengate"'
    return response


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    return {
        "location": ".".join(str(part) for part in error.get("loc", ())),
        "message": str(error.get("msg", "")),
        "type": str(error.get("type", "")),
    }


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_describe(e) for e in exc.errors()][:20]
    first = errors[0] if errors else {"location": "request", "message": "invalid"}
    return error_response(
        request_id_of(request),
        400,
        "invalid_request",
        f"Invalid {first['location'] or 'request'}: {first['message']}",
        {"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status in (404, 405):
        # Unknown routes and unknown methods on known routes are both "no such route".
        return error_response(
            request_id_of(request),
            404,
            "not_found",
            f"No route {request.method} {request.url.path}.",
        )
    code = STATUS_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    status = status if status in STATUS_CODES else (400 if status < 500 else 500)
    return error_response(request_id_of(request), status, code, str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GengateError, _gengate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
