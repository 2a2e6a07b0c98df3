"""The one exception tree of gengate. Each class maps to one error code of SPEC §2.

    GengateError
    ├── InvalidRequest        400 invalid_request
    ├── Unauthorized          401 unauthorized
    ├── InsufficientCredits   402 insufficient_credits
    ├── Forbidden             403 forbidden
    ├── NotFound              404 not_found
    ├── Conflict              409 conflict
    │   └── InvalidTransition
    ├── InvalidInput          422 invalid_input
    ├── RateLimited           429 rate_limited
    ├── ContentRejected       451 content_rejected
    ├── InternalError         500 internal_error
    ├── ProviderError         502 provider_error
    └── Overloaded            503 overloaded

Each class's docstring is its default message. The HTTP layer maps these to
responses in exactly one place (`gengate.api.errors`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class GengateError(Exception):
    """Something went wrong."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(self.message)


class InvalidRequest(GengateError):
    """The request is malformed."""

    code = "invalid_request"
    http_status = 400


class Unauthorized(GengateError):
    """A valid API key is required."""

    code = "unauthorized"
    http_status = 401


class InsufficientCredits(GengateError):
    """The account's available balance is below this job's price."""

    code = "insufficient_credits"
    http_status = 402


class Forbidden(GengateError):
    """This action is not allowed."""

    code = "forbidden"
    http_status = 403


class NotFound(GengateError):
    """Not found."""

    code = "not_found"
    http_status = 404


class Conflict(GengateError):
    """The request conflicts with the current state."""

    code = "conflict"
    http_status = 409


class InvalidTransition(Conflict):
    """The job cannot change to that status."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(
            f"A {current} job cannot become {target}.",
            details={"status": current, "target": target},
        )
        self.current = current
        self.target = target


class InvalidInput(GengateError):
    """The input does not match the model's schema."""

    code = "invalid_input"
    http_status = 422


class RateLimited(GengateError):
    """Too many requests for this API key."""

    code = "rate_limited"
    http_status = 429


class ContentRejected(GengateError):
    """The content policy refused this request."""

    code = "content_rejected"
    http_status = 451


class InternalError(GengateError):
    """An unexpected error occurred."""


class ProviderError(GengateError):
    """The model backend failed."""

    code = "provider_error"
    http_status = 502


class Overloaded(GengateError):
    """The model's queue is full; try again later."""

    code = "overloaded"
    http_status = 503
