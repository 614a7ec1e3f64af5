"""Retention of report documents: an index on ``observations.document_id``, so that a
prune finds the documents no observation refers to any more with one index probe each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_observations_document", "observations", ["document_id"])


def downgrade() -> None:
    op.drop_index("ix_observations_document", table_name="observations")
