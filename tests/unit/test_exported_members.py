"""The public surface of packages that third parties import is exactly what we mean."""

from __future__ import annotations

import gengate.providers
from gengate.domain import money
from gengate.providers import base

# What a third-party provider package needs to implement and register a backend.
PROVIDER_API = {
    "Provider",
    "GenerationContext",
    "GenerationResult",
    "SavedOutput",
    "GenerationError",
    "RetryableError",
    "ContentRejectedError",
    "InvalidInputError",
    "InputMedia",
    "InputUnavailableError",
    "Price",
    "PriceUnit",
}


def test_providers_exports_exactly_the_provider_api() -> None:
    assert set(gengate.providers.__all__) == PROVIDER_API
    assert len(gengate.providers.__all__) == len(PROVIDER_API)  # no duplicates


def test_every_exported_name_is_the_interface_object() -> None:
    for name in gengate.providers.__all__:
        origin = money if name in ("Price", "PriceUnit") else base
        assert getattr(gengate.providers, name) is getattr(origin, name)


def test_star_import_gives_the_exported_names() -> None:
    namespace: dict[str, object] = {}
    exec("from gengate.providers import *", namespace)
    assert set(namespace) - {"__builtins__"} == PROVIDER_API


def test_provider_errors_share_one_root() -> None:
    for name in ("RetryableError", "ContentRejectedError", "InvalidInputError"):
        assert issubclass(getattr(gengate.providers, name), gengate.providers.GenerationError)
    assert gengate.providers.RetryableError.retryable is True
    assert gengate.providers.GenerationError.retryable is False
    assert gengate.providers.ContentRejectedError.code == "content_rejected"
    assert gengate.providers.InvalidInputError.code == "invalid_input"
    assert gengate.providers.GenerationError.code == "provider_error"
