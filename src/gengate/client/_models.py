"""The SDK's own wire models: the job record of SPEC §2 as frozen dataclasses.

Parsing is lenient on purpose: fields the server adds later are kept in the raw record
(`to_dict()`) and ignored here, and fields it leaves out get their empty value, so an
older SDK keeps working against a newer server. Nothing here performs I/O or imports
the server.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "partial", "failed", "cancelled"})


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time of the API (`2026-11-28T23:13:14.236Z`) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass(frozen=True)
class Cost:
    """What a job costs: `credits` (1 credit = 1 cent) and integer `cost_micro`."""

    credits: float = 0.0
    cost_micro: int = 0
    cost_usd: float = 0.0
    currency: str = "USD"

    @classmethod
    def from_dict(cls, data: Any) -> Cost:
        if not isinstance(data, dict):
            return cls()
        return cls(
            credits=float(data.get("credits", 0.0)),
            cost_micro=int(data.get("cost_micro", 0)),
            cost_usd=float(data.get("cost_usd", 0.0)),
            currency=str(data.get("currency", "USD")),
        )


@dataclass(frozen=True)
class Output:
    """One output file of a job, behind an expiring signed link (`url`)."""

    url: str | None
    asset_id: str
    content_type: str
    bytes: int
    width: int | None = None
    height: int | None = None
    duration_sec: float | None = None
    expires_at: datetime | None = None
    expired: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Output:
        return cls(
            url=data.get("url"),
            asset_id=str(data.get("asset_id", "")),
            content_type=str(data.get("content_type", "application/octet-stream")),
            bytes=int(data.get("bytes", 0)),
            width=_int_or_none(data.get("width")),
            height=_int_or_none(data.get("height")),
            duration_sec=_float_or_none(data.get("duration_sec")),
            expires_at=parse_time(data.get("expires_at")),
            expired=bool(data.get("expired", False)),
        )


@dataclass(frozen=True)
class JobResult:
    """The outputs of a succeeded or partial job; `url` is the primary output's link."""

    url: str | None
    outputs: tuple[Output, ...]

    @classmethod
    def from_dict(cls, data: Any) -> JobResult | None:
        if not isinstance(data, dict):
            return None
        outputs = tuple(Output.from_dict(o) for o in data.get("outputs", []) if isinstance(o, dict))
        return cls(url=data.get("url"), outputs=outputs)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: a machine `code` (`provider_error`, `timeout`, …) and a message."""

    code: str
    message: str

    @classmethod
    def from_dict(cls, data: Any) -> JobError | None:
        if not isinstance(data, dict):
            return None
        return cls(code=str(data.get("code", "")), message=str(data.get("message", "")))


@dataclass(frozen=True)
class WebhookState:
    """The job's webhook: its URL, `pending`/`delivered`/`failed`, and attempts made."""

    url: str
    status: str
    attempts: int

    @classmethod
    def from_dict(cls, data: Any) -> WebhookState | None:
        if not isinstance(data, dict):
            return None
        return cls(
            url=str(data.get("url", "")),
            status=str(data.get("status", "")),
            attempts=int(data.get("attempts", 0)),
        )


@dataclass(frozen=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    """The job record's fields as attributes. `Job` and `AsyncJob` add the actions."""

    id: str
    status: str
    model: str
    modality: str
    input: dict[str, Any]
    progress: int
    scenes_completed: int | None
    scenes_total: int | None
    queue_position: int | None
    priority: int
    attempts: int
    result: JobResult | None
    cost: Cost
    error: JobError | None
    webhook: WebhookState | None
    asset_ids: tuple[str, ...]
    tags: tuple[Tag, ...]
    metadata: dict[str, Any]
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    _raw: dict[str, Any] = field(repr=False, compare=False)

    @staticmethod
    def fields_from(record: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for a record class, from the wire record."""
        tags = tuple(
            Tag(str(t.get("key", "")), str(t.get("value", "")))
            for t in record.get("tags") or []
            if isinstance(t, dict)
        )
        return {
            "id": str(record["id"]),
            "status": str(record["status"]),
            "model": str(record.get("model", "")),
            "modality": str(record.get("modality", "")),
            "input": dict(record.get("input") or {}),
            "progress": int(record.get("progress") or 0),
            "scenes_completed": _int_or_none(record.get("scenes_completed")),
            "scenes_total": _int_or_none(record.get("scenes_total")),
            "queue_position": _int_or_none(record.get("queue_position")),
            "priority": int(record.get("priority") or 0),
            "attempts": int(record.get("attempts") or 0),
            "result": JobResult.from_dict(record.get("result")),
            "cost": Cost.from_dict(record.get("cost")),
            "error": JobError.from_dict(record.get("error")),
            "webhook": WebhookState.from_dict(record.get("webhook")),
            "asset_ids": tuple(str(a) for a in record.get("asset_ids") or []),
            "tags": tags,
            "metadata": dict(record.get("metadata") or {}),
            "created_at": parse_time(record.get("created_at")),
            "started_at": parse_time(record.get("started_at")),
            "completed_at": parse_time(record.get("completed_at")),
            "_raw": record,
        }

    @property
    def url(self) -> str | None:
        """The primary output's signed link, or None before the job has one."""
        return self.result.url if self.result is not None else None

    @property
    def is_terminal(self) -> bool:
        """True once the job is succeeded, partial, failed or cancelled."""
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """The job record exactly as the server sent it (a copy)."""
        return copy.deepcopy(self._raw)
