"""Wire schemas: request envelopes (validated) and response shapes (documented in
the OpenAPI document; responses are rendered by `services.records`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from gengate.domain.canonical import check_json_value

JobStatusName = Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
WebhookEventType = Literal["job.succeeded", "job.partial", "job.failed", "job.cancelled"]
JobErrorCode = Literal[
    "content_rejected",
    "provider_error",
    "timeout",
    "worker_lost",
    "expired",
    "invalid_input",
    "internal_error",
]


class Tag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=500)


class Envelope(BaseModel):
    """Fields of a submit that are about the job, not the model's input."""

    webhook_url: str | None = Field(None, max_length=2048)
    webhook_events: list[WebhookEventType] | None = Field(None, max_length=4)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=50)
    priority: StrictInt = Field(0, ge=-10, le=10)
    timeout_s: StrictInt | None = Field(None, ge=1, le=86_400)

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)
        return value


class RunRequest(Envelope):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(default_factory=dict)
    sync: StrictBool = True

    @field_validator("input")
    @classmethod
    def _storable_input(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value)
        return value


class ModalityRequest(Envelope):
    """`model`, the envelope fields, and the model's input flattened beside them."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, min_length=1, max_length=200)
    sync: StrictBool = False

    @model_validator(mode="after")
    def _storable_input(self) -> ModalityRequest:
        check_json_value(self.model_extra or {})
        return self


class ErrorBody(BaseModel):
    error: str
    message: str
    details: dict[str, Any]
    request_id: str


class OutputFile(BaseModel):
    url: str | None
    asset_id: str
    content_type: str
    bytes: int
    width: int | None
    height: int | None
    duration_sec: float | None
    expires_at: datetime | None
    expired: bool


class JobResult(BaseModel):
    url: str | None
    outputs: list[OutputFile]


class Cost(BaseModel):
    credits: float
    cost_micro: int
    cost_usd: float
    currency: Literal["USD"]


class JobError(BaseModel):
    code: JobErrorCode
    message: str


class WebhookState(BaseModel):
    url: str
    # skipped: the job's webhook_events leave out its terminal event, so nothing is sent.
    status: Literal["pending", "delivered", "failed", "skipped"]
    attempts: int


class JobRecord(BaseModel):
    object: Literal["job"]
    id: str = Field(pattern=r"^job_[0-9a-f]{32}$")
    status: JobStatusName
    model: str
    modality: str
    input: dict[str, Any]
    progress: int = Field(ge=0, le=100)
    scenes_completed: int | None
    scenes_total: int | None
    queue_position: int | None
    priority: int
    attempts: int
    result: JobResult | None
    cost: Cost
    error: JobError | None
    webhook: WebhookState | None
    asset_ids: list[str]
    tags: list[Tag]
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class JobList(BaseModel):
    jobs: list[JobRecord]
    has_more: bool
    cursor: str | None


class Account(BaseModel):
    object: Literal["account"]
    id: str
    name: str
    balance_micro: int
    reserved_micro: int
    available_micro: int
    credits: float


class LedgerEntry(BaseModel):
    id: str
    kind: Literal["credit", "reserve", "release", "charge"]
    amount_micro: int
    balance_after_micro: int
    reserved_after_micro: int
    job_id: str | None
    note: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    entries: list[LedgerEntry]
    has_more: bool
    cursor: str | None


class Asset(BaseModel):
    """An output file of a job. `expires_at` is when the retention sweep deletes the
    file; `url_expires_at` is when this link stops working."""

    object: Literal["asset"]
    id: str = Field(pattern=r"^out_[0-9a-f]{32}$")
    job_id: str
    model: str
    modality: str
    position: int
    url: str | None
    url_expires_at: datetime | None
    content_type: str
    bytes: int
    width: int | None
    height: int | None
    duration_sec: float | None
    tags: list[Tag]
    created_at: datetime
    expires_at: datetime
    expired: bool
    deleted_at: datetime | None


class AssetList(BaseModel):
    assets: list[Asset]
    has_more: bool
    cursor: str | None


class Upload(BaseModel):
    """An input file. `expires_at` is when it is deleted; `url_expires_at` is when
    this link stops working."""

    object: Literal["upload"]
    id: str = Field(pattern=r"^upl_[0-9a-f]{32}$")
    url: str | None
    url_expires_at: datetime | None
    content_type: Literal["image/png", "image/jpeg", "image/webp", "audio/wav", "audio/mpeg"]
    bytes: int
    filename: str | None
    created_at: datetime
    expires_at: datetime
    expired: bool


class Pricing(BaseModel):
    unit: str
    credits_per_unit: float
    micro_per_unit: int


class ModelInfo(BaseModel):
    id: str
    modality: str
    description: str
    input_schema: dict[str, Any]
    pricing: Pricing
    limits: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, bool]


class WebhookDelivery(BaseModel):
    """One attempt to deliver a job's webhook."""

    id: str = Field(pattern=r"^whd_[0-9a-f]{32}$")
    webhook_id: str = Field(description="the `webhook-id` header: the same on every attempt")
    event_type: WebhookEventType
    attempt: int = Field(ge=1, description="the `gengate-webhook-attempt` header")
    status_code: int | None = Field(description="null when no answer arrived")
    error: str | None = Field(description="null for a 2xx answer; else why it failed")
    latency_ms: int | None
    response_body: str | None = Field(description="the first 1,024 bytes of the answer")
    created_at: datetime


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDelivery]


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all in the error shape."""
    return {status: {"model": ErrorBody} for status in statuses}


# Every authenticated route can answer these.
AUTHED = (400, 401, 404, 422, 429, 500)
