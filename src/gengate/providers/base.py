"""The Provider interface: how a backend turns a job's input into output files.

A provider is constructed once per configured model with the operator's `params`.
For each job the worker calls `generate(ctx)`; the context gives the validated
input, progress reporting, output saving, a cancellation signal, a logger,
`run_cpu` to run heavy work off the event loop, and `fetch_input` to read a media URL
of the input under the gateway's outbound rules. Failures are raised as
`GenerationError` subclasses, whose `code` becomes the job's error code.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from gengate.domain.money import Price

T = TypeVar("T")


class GenerationError(Exception):
    """The backend failed to produce the output."""

    code: ClassVar[str] = "provider_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)


class RetryableError(GenerationError):
    """The backend failed in a way that may pass on another attempt."""

    retryable = True


class ContentRejectedError(GenerationError):
    """The backend's content policy refused this input."""

    code = "content_rejected"


class InvalidInputError(GenerationError):
    """The backend cannot use this input."""

    code = "invalid_input"


class InputUnavailableError(RetryableError):
    """A media URL in the input could not be fetched just now."""

    # Retried like any retryable failure; when the attempts run out the input is at
    # fault, not the model.
    code = "invalid_input"


@dataclass(frozen=True, slots=True)
class SavedOutput:
    """One file a job produced, as stored."""

    output_id: str
    storage_key: str
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration_sec: float | None = None


@dataclass(frozen=True, slots=True)
class InputMedia:
    """A media file named by the input (`image_url`, `audio_url`), as fetched."""

    data: bytes
    content_type: str  # sniffed from the bytes, one of those the provider accepts


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """What a finished generation produced, in the model's pricing units."""

    units: float
    partial: bool = False


class GenerationContext(Protocol):
    """What a provider can see and do while generating one job."""

    job_id: str
    input: Mapping[str, Any]
    attempt: int
    cancelled: asyncio.Event
    logger: logging.LoggerAdapter[logging.Logger]

    def progress(
        self,
        percent: float,
        *,
        scenes_completed: int | None = None,
        scenes_total: int | None = None,
    ) -> None: ...

    async def save_output(
        self,
        data: bytes,
        content_type: str,
        *,
        width: int | None = None,
        height: int | None = None,
        duration_sec: float | None = None,
    ) -> SavedOutput: ...

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args, stop=event)` in the CPU thread pool, off the event loop;
        `event` (a threading.Event) is set when the job is cancelled."""
        ...

    async def fetch_input(self, url: str, *, field: str, accept: Collection[str]) -> InputMedia:
        """The file behind a media URL of the input field `field`: an upload or file link
        of this deployment read from storage, or any other URL fetched under the address
        guard with the operator's size and time limits. Its type is sniffed from the bytes
        and must be one of `accept`. Raises `InvalidInputError` when the URL cannot be
        used, `InputUnavailableError` (retried) when it may work on another attempt."""
        ...


class Provider(ABC):
    """A model backend. Subclasses declare their modality, price and input schema."""

    modality: ClassVar[str]
    description: ClassVar[str]
    price: ClassVar[Price]
    #: Jobs one worker runs at once; None means one per CPU core.
    default_concurrency: ClassVar[int | None] = None

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})

    @abstractmethod
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the model's input (unknown fields must be refused)."""

    @abstractmethod
    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        """An upper bound of the pricing units this input can cost (for the reservation)."""

    @abstractmethod
    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        """Produce the outputs (through `ctx.save_output`) and report the units used."""

    async def cancel(self, ctx: GenerationContext) -> None:  # noqa: B027 - optional hook
        """Called after a running job was cancelled, e.g. to cancel it upstream."""

    def limits(self) -> dict[str, Any]:
        """Limits worth showing in `GET /v1/models` beyond the input schema."""
        return {}


PROMPT_PROPERTY: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 10_000}
SEED_PROPERTY: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}


def prompt_schema(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The input schema of a model driven by a prompt (required) and a seed: those two,
    `properties`, and nothing else (unknown fields are refused)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["prompt"],
        "properties": {"prompt": PROMPT_PROPERTY, "seed": SEED_PROPERTY, **properties},
    }
