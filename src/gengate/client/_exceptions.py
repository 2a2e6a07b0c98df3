"""Every exception the SDK raises, in one tree:

    GengateError
    ├── MissingAPIKeyError            no api_key given and GENGATE_API_KEY unset
    ├── APIConnectionError            the server could not be reached (after retries)
    │   └── APITimeoutError           ... because the request timed out
    ├── APIResponseError              the server's answer could not be understood
    ├── APIStatusError                the server answered with an error (SPEC §2 shape)
    │   ├── BadRequestError           400 invalid_request
    │   ├── AuthenticationError       401 unauthorized
    │   ├── InsufficientCreditsError  402 insufficient_credits
    │   ├── PermissionDeniedError     403 forbidden
    │   ├── NotFoundError             404 not_found
    │   ├── ConflictError             409 conflict
    │   ├── InvalidInputError         422 invalid_input
    │   ├── RateLimitError            429 rate_limited
    │   ├── ContentRejectedError      451 content_rejected
    │   ├── InternalServerError       500 internal_error
    │   ├── ProviderError             502 provider_error
    │   └── OverloadedError           503 overloaded
    ├── WaitTimeoutError              job.wait() ran out of time (.job: the last record seen)
    └── NoOutputError                 job.download() on a job without a downloadable file

Each class's docstring is its default message. An `APIStatusError` is chosen by the
answer's `error` code first and by its HTTP status when the code is unknown (an answer
from a proxy in front of the server has no code), so every answer gets the most
precise class there is. This module imports nothing from the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import httpx

if TYPE_CHECKING:
    from gengate.client._models import JobRecord


class GengateError(Exception):
    """The gengate SDK failed."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or "").strip()
        super().__init__(self.message)


class MissingAPIKeyError(GengateError):
    """No API key: pass api_key= or set GENGATE_API_KEY."""


class APIConnectionError(GengateError):
    """The gengate server could not be reached."""

    def __init__(self, message: str | None = None, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class APITimeoutError(APIConnectionError, TimeoutError):
    """The request to the gengate server timed out."""


class APIResponseError(GengateError):
    """The server's answer could not be understood."""

    def __init__(self, message: str | None = None, *, response: httpx.Response) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code


class APIStatusError(GengateError):
    """The gengate server answered with an error."""

    error_code: ClassVar[str | None] = None
    http_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str | None = None,
        *,
        response: httpx.Response,
        code: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.code = code
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.status_code} {self.code}: {self.message}{where}"

    def to_dict(self) -> dict[str, Any]:
        """The error in the server's one error shape, plus the HTTP status."""
        return {
            "error": self.code,
            "message": self.message,
            "details": self.details,
            "request_id": self.request_id,
            "status_code": self.status_code,
        }


class BadRequestError(APIStatusError):
    """The request is malformed."""

    error_code = "invalid_request"
    http_status = 400


class AuthenticationError(APIStatusError):
    """A valid API key is required."""

    error_code = "unauthorized"
    http_status = 401


class InsufficientCreditsError(APIStatusError):
    """The account's available balance is below this job's price."""

    error_code = "insufficient_credits"
    http_status = 402


class PermissionDeniedError(APIStatusError):
    """This action is not allowed (or a file link is tampered or expired)."""

    error_code = "forbidden"
    http_status = 403


class NotFoundError(APIStatusError):
    """Not found."""

    error_code = "not_found"
    http_status = 404


class ConflictError(APIStatusError):
    """The request conflicts with the current state."""

    error_code = "conflict"
    http_status = 409


class InvalidInputError(APIStatusError):
    """The input does not match the model's schema."""

    error_code = "invalid_input"
    http_status = 422


class RateLimitError(APIStatusError):
    """Too many requests for this API key."""

    error_code = "rate_limited"
    http_status = 429


class ContentRejectedError(APIStatusError):
    """The content policy refused this request."""

    error_code = "content_rejected"
    http_status = 451


class InternalServerError(APIStatusError):
    """The server failed unexpectedly."""

    error_code = "internal_error"
    http_status = 500


class ProviderError(APIStatusError):
    """The model backend failed."""

    error_code = "provider_error"
    http_status = 502


class OverloadedError(APIStatusError):
    """The model's queue is full; try again later."""

    error_code = "overloaded"
    http_status = 503


class WaitTimeoutError(GengateError, TimeoutError):
    """The job did not finish in time."""

    def __init__(self, message: str | None = None, *, job: JobRecord, timeout: float) -> None:
        super().__init__(message or f"Job {job.id} is still {job.status} after {timeout:g} s.")
        self.job = job
        self.timeout = timeout


class NoOutputError(GengateError):
    """The job has no output file to download."""


STATUS_ERRORS: tuple[type[APIStatusError], ...] = (
    BadRequestError,
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    NotFoundError,
    ConflictError,
    InvalidInputError,
    RateLimitError,
    ContentRejectedError,
    InternalServerError,
    ProviderError,
    OverloadedError,
)
ERRORS_BY_CODE = {cls.error_code: cls for cls in STATUS_ERRORS}
ERRORS_BY_STATUS = {cls.http_status: cls for cls in STATUS_ERRORS}
