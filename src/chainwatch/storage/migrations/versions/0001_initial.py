"""Initial schema: certificates, targets, observations (+ their chains), heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        _time("not_before", nullable=True),
        _time("not_after", nullable=True),
        _time("first_seen"),
    )
    op.create_index("ix_certificates_not_after", "certificates", ["not_after"])

    op.create_table(
        "targets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("sni", sa.String(255), nullable=False),
        sa.Column("starttls", sa.String(16), nullable=False),
        sa.UniqueConstraint("host", "port", "ip", "sni", "starttls", name="uq_targets_identity"),
    )

    op.create_table(
        "observations",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "target_id",
            sa.Integer(),
            sa.ForeignKey("targets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _time("observed_at"),
        sa.Column("status", sa.String(16), nullable=False),
        _time("breaks_at", nullable=True),
        sa.Column("days_left", sa.Integer(), nullable=True),
        sa.Column(
            "leaf_sha256", sa.String(64), sa.ForeignKey("certificates.sha256"), nullable=True
        ),
        sa.Column("tls_version", sa.String(32), nullable=True),
        sa.Column("cipher", sa.String(128), nullable=True),
        sa.Column("ocsp_staple", sa.LargeBinary(), nullable=True),
        sa.Column("failure", sa.String(32), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("elapsed", sa.Float(), nullable=False),
        sa.Column("findings", JSON_DOC, nullable=False),
        sa.Column("report", JSON_DOC, nullable=False),
    )
    op.create_index(
        "ix_observations_target_time", "observations", ["target_id", "observed_at", "id"]
    )
    op.create_index("ix_observations_observed_at", "observations", ["observed_at"])

    op.create_table(
        "observation_certs",
        sa.Column(
            "observation_id",
            ROW_ID,
            sa.ForeignKey("observations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column(
            "sha256", sa.String(64), sa.ForeignKey("certificates.sha256"), nullable=False
        ),
    )
    op.create_index("ix_observation_certs_sha256", "observation_certs", ["sha256"])

    op.create_table(
        "heartbeats",
        sa.Column("component", sa.String(128), primary_key=True),
        _time("last_beat"),
        sa.Column("info", JSON_DOC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
    op.drop_table("observation_certs")
    op.drop_table("observations")
    op.drop_table("targets")
    op.drop_table("certificates")
