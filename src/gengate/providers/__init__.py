"""Model backends: the Provider interface, the registry, one module per backend."""

from gengate.providers.base import (
    ContentRejectedError,
    GenerationContext,
    GenerationError,
    GenerationResult,
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
    "InvalidInputError",
    "Provider",
    "RetryableError",
    "SavedOutput",
]
