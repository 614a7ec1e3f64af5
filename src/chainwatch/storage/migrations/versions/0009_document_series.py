"""What ``/metrics`` needs of each report document, stored beside it.

``report_series`` holds, per report document, compact JSON text (see
:mod:`chainwatch.storage.series`): each profile's spec, trust and ``breaks_at``, the
findings counted by code and severity and the served certificates' ``not_after``. Rendering
``/metrics`` then reads a few dozen bytes per target from a narrow table instead of
decoding each whole document (or even reading its pages). New documents get their row
when they are written; the documents already stored get theirs here, a page at a time.
A document without a row (none should be) is read from its body instead. Rows go with
their document (``ON DELETE CASCADE``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PAGE = 1000


def upgrade() -> None:
    from chainwatch.storage.series import series_of

    op.create_table(
        "report_series",
        sa.Column("document_id", ROW_ID,
                  sa.ForeignKey("report_documents.id", name="fk_report_series_document",
                                ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("series", sa.Text(), nullable=False),
    )
    bind = op.get_bind()
    meta = sa.MetaData()
    docs = sa.Table("report_documents", meta, sa.Column("id", ROW_ID),
                    sa.Column("body", JSON_DOC))
    series = sa.Table("report_series", meta, sa.Column("document_id", ROW_ID),
                      sa.Column("series", sa.Text()))
    last = None
    while True:
        stmt = sa.select(docs.c.id, docs.c.body).order_by(docs.c.id).limit(_PAGE)
        if last is not None:
            stmt = stmt.where(docs.c.id > last)
        page = bind.execute(stmt).all()
        if not page:
            break
        bind.execute(sa.insert(series), [{"document_id": i, "series": series_of(body or {})}
                                         for i, body in page])
        last = page[-1][0]


def downgrade() -> None:
    op.drop_table("report_series")
