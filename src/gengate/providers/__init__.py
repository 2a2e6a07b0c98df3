"""Model backends: the Provider interface, the registry, one module per backend."""

from gengate.domain.money import Price, PriceUnit
from gengate.providers.base import (
    ContentRejectedError,
    GenerationContext,
    GenerationError,
    GenerationResult,
    InputMedia,
    InputUnavailableError,
    InvalidInputError,
    Provider,
    RetryableError,
    SavedOutput,
)

__all__ = [
    "ContentRejectedError",
    "GenerationContext",
    "GenerationError",
    "GenerationResult",
    "InputMedia",
    "InputUnavailableError",
    "InvalidInputError",
    "Price",
    "PriceUnit",
    "Provider",
    "RetryableError",
    "SavedOutput",
]
