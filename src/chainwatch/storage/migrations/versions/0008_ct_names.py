"""Certificate Transparency import results: every name ``discover ct`` found, with the
export it came from and when it was first and last imported (the dashboard's
Discovery page reads them).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ct_names",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ct_names_last_seen", "ct_names", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_ct_names_last_seen", table_name="ct_names")
    op.drop_table("ct_names")
