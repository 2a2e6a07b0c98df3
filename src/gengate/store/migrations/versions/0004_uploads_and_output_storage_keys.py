"""uploads and output storage keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 23:46:37.654256
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gengate.store.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("storage_key", sa.String(length=500), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("created_at", gengate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", gengate.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", gengate.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_uploads_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_uploads_storage_key")),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index("ix_uploads_account_id_id", ["account_id", "id"], unique=False)
        batch_op.create_index(
            "ix_uploads_retention",
            ["expires_at"],
            unique=False,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )

    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.create_index("ix_outputs_storage_key", ["storage_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.drop_index("ix_outputs_storage_key")

    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_uploads_retention",
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        )
        batch_op.drop_index("ix_uploads_account_id_id")

    op.drop_table("uploads")
