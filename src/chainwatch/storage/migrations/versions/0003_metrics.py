"""Metrics: certificate serial numbers (for ``chainwatch_leaf_info``) and the monitor's
counters (scan durations, probe failures by reason), so that a process that only reads
the database serves the same ``/metrics`` as the one that scans.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL_PAGE = 1000


def _serial(der: bytes) -> str | None:
    from cryptography import x509

    try:
        return format(x509.load_der_x509_certificate(der).serial_number, "x")
    except (ValueError, x509.InvalidVersion):
        return None


def upgrade() -> None:
    op.add_column("certificates", sa.Column("serial", sa.String(64), nullable=True))
    op.create_table(
        "monitor_counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("labels", sa.String(255), primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )
    # Serial numbers of the certificates stored before this revision, page by page.
    conn = op.get_bind()
    certs = sa.table("certificates", sa.column("sha256", sa.String),
                     sa.column("der", sa.LargeBinary), sa.column("serial", sa.String))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(certs.c.sha256, certs.c.der).where(certs.c.sha256 > last)
            .order_by(certs.c.sha256).limit(_BACKFILL_PAGE)
        ).all()
        if not rows:
            break
        for sha, der in rows:
            serial = _serial(der)
            if serial is not None:
                conn.execute(sa.update(certs).where(certs.c.sha256 == sha)
                             .values(serial=serial))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_table("monitor_counters")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite (3.35+) drops a column in place; alembic's batch mode would copy the
        # table, which the foreign keys to it forbid.
        op.execute("ALTER TABLE certificates DROP COLUMN serial")
    else:
        op.drop_column("certificates", "serial")
