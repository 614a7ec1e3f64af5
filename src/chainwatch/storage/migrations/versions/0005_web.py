"""Web: an index on the observations' ``breaks_at``, so that the dashboard's first page
of 100,000 targets sorted by when they break is an index walk, not a sort.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_observations_breaks_at", "observations", ["breaks_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_observations_breaks_at", table_name="observations")
