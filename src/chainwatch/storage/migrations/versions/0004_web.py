"""Web: an index on the observations' ``breaks_at``, so that the dashboard's first page
of 100,000 targets sorted by when they break is an index walk, not a sort.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_observations_breaks_at", "observations", ["breaks_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_observations_breaks_at", table_name="observations")
