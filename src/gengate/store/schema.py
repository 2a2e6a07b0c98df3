"""The SQL schema, declared once with SQLAlchemy Core. Migrations must produce it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    text,
)

from gengate.store.types import JSONDocument, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

system_settings = Table(
    "system_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("balance_micro", BigInteger, nullable=False, server_default=text("0")),
    Column("reserved_micro", BigInteger, nullable=False, server_default=text("0")),
    Column("webhook_secret", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # After a rotation, webhooks are signed with the old secret too until this expires.
    Column("previous_webhook_secret", String(100), nullable=True),
    Column("previous_webhook_secret_expires_at", UTCDateTime, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False),
    Column("job_id", Uuid, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("amount_micro", BigInteger, nullable=False),
    Column("balance_after_micro", BigInteger, nullable=False),
    Column("reserved_after_micro", BigInteger, nullable=False),
    Column("note", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_ledger_entries_account_id_id", "account_id", "id"),
    # A job is reserved, released and charged at most once, whatever crashes or retries.
    Index(
        "uq_ledger_entries_job_id_kind",
        "job_id",
        "kind",
        unique=True,
        sqlite_where=text("job_id IS NOT NULL"),
        postgresql_where=text("job_id IS NOT NULL"),
    ),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False),
    Column("model", String(200), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("input", JSONDocument, nullable=False),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("fair_tag", BigInteger, nullable=False, server_default=text("0")),
    Column("progress", Integer, nullable=False, server_default=text("0")),
    Column("scenes_completed", Integer, nullable=True),
    Column("scenes_total", Integer, nullable=True),
    Column("result", JSONDocument, nullable=True),
    Column("error", JSONDocument, nullable=True),
    Column("reserved_micro", BigInteger, nullable=False),
    Column("cost_micro", BigInteger, nullable=False, server_default=text("0")),
    Column("webhook_url", Text, nullable=True),
    Column("webhook_events", JSONDocument, nullable=True),
    Column("webhook_status", String(16), nullable=True),
    Column("webhook_attempts", Integer, nullable=False, server_default=text("0")),
    Column("tags", JSONDocument, nullable=False),
    Column("metadata", JSONDocument, nullable=False),
    Column("timeout_s", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("run_after", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("cancel_at", UTCDateTime, nullable=True),
    Column("lease_token", BigInteger, nullable=False, server_default=text("0")),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("completed_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # Listing: an account's jobs, newest first (ids are time-ordered).
    Index("ix_jobs_account_id_id", "account_id", "id"),
    # The reaper: running jobs by lease expiry; heartbeats: running jobs by worker.
    Index(
        "ix_jobs_lease",
        "lease_expires_at",
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
    Index(
        "ix_jobs_worker",
        "worker_id",
        sqlite_where=text("status = 'running'"),
        postgresql_where=text("status = 'running'"),
    ),
    # Deadlines: queue TTL of queued jobs, Cancel-After of active jobs.
    Index(
        "ix_jobs_expiry",
        "expires_at",
        sqlite_where=text("status = 'queued'"),
        postgresql_where=text("status = 'queued'"),
    ),
    Index(
        "ix_jobs_cancel_at",
        "cancel_at",
        sqlite_where=text("cancel_at IS NOT NULL AND status IN ('queued', 'running')"),
        postgresql_where=text("cancel_at IS NOT NULL AND status IN ('queued', 'running')"),
    ),
)

# The claim: the queued jobs of a model in run order (priority desc, fair tag, id),
# so a claim reads the head of this index and sorts nothing. Small, because partial.
Index(
    "ix_jobs_queue",
    jobs.c.model,
    jobs.c.priority.desc(),
    jobs.c.fair_tag,
    jobs.c.id,
    sqlite_where=text("status = 'queued'"),
    postgresql_where=text("status = 'queued'"),
)

# The fleet-wide concurrency cap counts a model's running jobs.
Index(
    "ix_jobs_running_model",
    jobs.c.model,
    sqlite_where=text("status = 'running'"),
    postgresql_where=text("status = 'running'"),
)

fair_share = Table(
    "fair_share",
    metadata,
    Column("model", String(200), primary_key=True),
    Column("account_id", Uuid, primary_key=True),
    Column("last_tag", BigInteger, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", Uuid, primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("job_id", Uuid, nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

outputs = Table(
    "outputs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("job_id", Uuid, ForeignKey("jobs.id"), nullable=False, index=True),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("storage_key", String(500), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("duration_sec", Float, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Index("ix_outputs_account_id_id", "account_id", "id"),
    Index(
        "ix_outputs_retention",
        "expires_at",
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
    # File downloads find the output (content type, file name) by its key.
    Index("ix_outputs_storage_key", "storage_key"),
)

# Input files uploaded by an account (`POST /v1/uploads`), deleted after `upload_ttl_s`.
uploads = Table(
    "uploads",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False),
    Column("storage_key", String(500), nullable=False, unique=True),
    Column("content_type", String(100), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("filename", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime, nullable=True),
    Index("ix_uploads_account_id_id", "account_id", "id"),
    Index(
        "ix_uploads_retention",
        "expires_at",
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

# The webhook outbox: one message per job event, written in the job's terminal
# transaction; its id is the `webhook-id` every attempt carries. Deleting a job deletes
# its message and attempts (the job-retention sweep).
webhook_messages = Table(
    "webhook_messages",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("job_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", Uuid, ForeignKey("accounts.id"), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("schedule_step", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_token", BigInteger, nullable=False, server_default=text("0")),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # One event per job: the job's terminal transition happens once.
    Index("uq_webhook_messages_job_id", "job_id", unique=True),
    # The delivery loop's claim: pending messages by due time.
    Index(
        "ix_webhook_messages_due",
        "next_attempt_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# The audit trail: one row per HTTP attempt of a message.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column(
        "message_id",
        Uuid,
        ForeignKey("webhook_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_webhook_deliveries_message_id_id", "message_id", "id"),
)

__all__ = [
    "accounts",
    "api_keys",
    "fair_share",
    "idempotency_keys",
    "jobs",
    "ledger_entries",
    "metadata",
    "outputs",
    "system_settings",
    "uploads",
    "webhook_deliveries",
    "webhook_messages",
]
