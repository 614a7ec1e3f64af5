"""Distributed mode: the scan slot of an observation (unique per target: a redelivered
batch inserts nothing twice) and the batches put on the zones' queues.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # NULL (every observation not written by a distributed batch) is distinct from every
    # other NULL in a unique index on both backends: only slotted rows are constrained.
    op.add_column("observations", sa.Column("slot", sa.String(32), nullable=True))
    op.create_index("uq_observations_target_slot", "observations", ["target_id", "slot"],
                    unique=True)
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("queue", sa.String(128), nullable=False),
        sa.Column("slot", sa.String(32), nullable=False),
        sa.Column("targets", sa.Integer(), nullable=False),
        _time("dispatched_at"),
        _time("done_at", nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("observations", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        _time("evaluated_at", nullable=True),
    )
    op.create_index("ix_batches_zone_done", "batches", ["zone", "done_at"])
    op.create_index("ix_batches_evaluated", "batches", ["evaluated_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_evaluated", table_name="batches")
    op.drop_index("ix_batches_zone_done", table_name="batches")
    op.drop_table("batches")
    op.drop_index("uq_observations_target_slot", table_name="observations")
    with op.batch_alter_table("observations") as batch:
        batch.drop_column("slot")
