"""Every domain error carries the code and HTTP status of SPEC §2's error table."""

from __future__ import annotations

import pytest

from gengate.domain import errors
from gengate.domain.errors import GengateError

# SPEC §2: HTTP status and machine code per error class.
SPEC_TABLE: list[tuple[type[GengateError], int, str]] = [
    (errors.InvalidRequest, 400, "invalid_request"),
    (errors.Unauthorized, 401, "unauthorized"),
    (errors.InsufficientCredits, 402, "insufficient_credits"),
    (errors.Forbidden, 403, "forbidden"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.InvalidInput, 422, "invalid_input"),
    (errors.RateLimited, 429, "rate_limited"),
    (errors.ContentRejected, 451, "content_rejected"),
    (errors.InternalError, 500, "internal_error"),
    (errors.ProviderError, 502, "provider_error"),
    (errors.Overloaded, 503, "overloaded"),
]


@pytest.mark.parametrize(("cls", "status", "code"), SPEC_TABLE, ids=lambda v: str(v))
def test_error_codes_match_the_spec(cls: type[GengateError], status: int, code: str) -> None:
    assert cls.http_status == status
    assert cls.code == code
    error = cls()
    assert isinstance(error, GengateError)
    assert error.http_status == status
    assert error.code == code


def test_every_error_class_is_in_the_table() -> None:
    declared = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, GengateError) and obj is not GengateError
    }
    tabled = {cls for cls, _, _ in SPEC_TABLE} | {errors.InvalidTransition}
    assert declared == tabled


def test_the_base_error_is_an_internal_error() -> None:
    assert GengateError.http_status == 500
    assert GengateError.code == "internal_error"


def test_invalid_transition_is_a_conflict() -> None:
    error = errors.InvalidTransition("succeeded", "cancelled")
    assert isinstance(error, errors.Conflict)
    assert error.http_status == 409
    assert error.code == "conflict"
    assert error.current == "succeeded"
    assert error.target == "cancelled"


def test_default_message_is_the_class_docstring() -> None:
    assert errors.NotFound().message == "Not found."
    assert str(errors.Overloaded()) == "The model's queue is full; try again later."


def test_message_details_and_retry_after_are_kept() -> None:
    error = errors.RateLimited("slow down", details={"limit": 3}, retry_after=7)
    assert error.message == "slow down"
    assert str(error) == "slow down"
    assert error.details == {"limit": 3}
    assert error.retry_after == 7
    assert errors.InvalidInput().details == {}
    assert errors.InvalidInput().retry_after is None
