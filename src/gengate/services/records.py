"""The job record of SPEC §2, built from a job row: the one wire shape of a job,
shared by the API, the event streams and webhook payloads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gengate.domain.ids import format_id
from gengate.domain.money import cost_view
from gengate.storage.signing import LinkSigner, expires_at_iso, expiry_for
from gengate.store.jobs import JobRow


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LinkBuilder:
    """Absolute links to stored files, all expiring at the same hour: our signed
    `/v1/files` links, or the storage backend's presigned URLs (S3)."""

    signer: LinkSigner
    base_url: str
    expires: int

    @classmethod
    def create(
        cls, signer: LinkSigner, base_url: str, *, now: datetime, lifetime_s: int
    ) -> LinkBuilder:
        return cls(signer, base_url.rstrip("/"), expiry_for(now, lifetime_s))

    def url(self, storage_key: str) -> str:
        return self.signer.url(self.base_url, storage_key, self.expires)


def render_outputs(stored: list[dict[str, Any]], links: LinkBuilder) -> list[dict[str, Any]]:
    rendered = []
    for output in stored:
        expired = bool(output.get("expired"))
        rendered.append(
            {
                "url": None if expired else links.url(output["storage_key"]),
                "asset_id": output["asset_id"],
                "content_type": output["content_type"],
                "bytes": output["bytes"],
                "width": output.get("width"),
                "height": output.get("height"),
                "duration_sec": output.get("duration_sec"),
                "expires_at": None if expired else expires_at_iso(links.expires),
                "expired": expired,
            }
        )
    return rendered


def render_job(
    row: JobRow, links: LinkBuilder, *, queue_position: int | None = None
) -> dict[str, Any]:
    result = None
    asset_ids: list[str] = []
    if row.result is not None:
        outputs = render_outputs(row.result.get("outputs", []), links)
        asset_ids = [output["asset_id"] for output in outputs]
        result = {"url": outputs[0]["url"] if outputs else None, "outputs": outputs}
    webhook = None
    if row.webhook_url is not None:
        webhook = {
            "url": row.webhook_url,
            "status": row.webhook_status,
            "attempts": row.webhook_attempts,
        }
    return {
        "object": "job",
        "id": format_id("job", row.id),
        "status": row.status,
        "model": row.model,
        "modality": row.modality,
        "input": row.input,
        "progress": row.progress,
        "scenes_completed": row.scenes_completed,
        "scenes_total": row.scenes_total,
        "queue_position": queue_position,
        "priority": row.priority,
        "attempts": row.attempts,
        "result": result,
        "cost": cost_view(row.cost_micro),
        "error": row.error,
        "webhook": webhook,
        "asset_ids": asset_ids,
        "tags": row.tags,
        "metadata": row.metadata,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "completed_at": iso(row.completed_at),
    }


def etag(row: JobRow, links: LinkBuilder) -> str:
    """The row version, plus the link-expiry hour when the record carries links."""
    bucket = links.expires if row.result is not None else 0
    return f'"{row.version}.{bucket}"'
