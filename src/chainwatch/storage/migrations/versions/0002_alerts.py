"""Alerts: escalation state per target, the delivery outbox, acknowledgement history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alert_state",
        sa.Column("target_key", sa.String(512), primary_key=True),
        sa.Column("cycle", sa.String(128), nullable=True),
        sa.Column("fired", JSON_DOC, nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("current", sa.String(64), nullable=True),
        sa.Column("ack_step", sa.String(64), nullable=True),
        _time("ack_until", nullable=True),
        sa.Column("ack_by", sa.String(255), nullable=True),
        sa.Column("ack_why", sa.Text(), nullable=True),
        _time("updated_at"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        _time("created_at"),
        sa.Column("target_key", sa.String(512), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("dedup_key", sa.String(600), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("next_attempt_at"),
        _time("last_attempt_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("delivered_at", nullable=True),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_channel_dedup", "outbox", ["channel", "dedup_key", "id"])
    op.create_index("ix_outbox_target", "outbox", ["target_key", "id"])

    op.create_table(
        "acks",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("target_key", sa.String(512), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        _time("until"),
        sa.Column("acked_by", sa.String(255), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        _time("created_at"),
    )
    op.create_index("ix_acks_target", "acks", ["target_key", "created_at"])


def downgrade() -> None:
    op.drop_table("acks")
    op.drop_table("outbox")
    op.drop_table("alert_state")
