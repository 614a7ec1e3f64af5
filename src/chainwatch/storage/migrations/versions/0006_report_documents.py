"""Report documents stored once per change: observations refer to them.

A steady scan's report is the same document as the target's previous one except for
``evaluated_at`` and ``days_left``: those two stay on the observation row
(``evaluated_at`` is new here, ``days_left`` was there already) and the rest of the
document goes to ``report_documents`` once, keyed by the SHA-256 of its canonical JSON;
``observations.document_id`` refers to it and ``observations.report`` is ``{}``. Rows
written before this revision keep their whole document in ``report`` (``document_id``
NULL) and read the same as before: nothing is rewritten.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "report_documents",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", JSON_DOC, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_report_documents_sha256"),
    )
    # On SQLite the batch rebuilds the table (copying every row) to add the foreign key;
    # on PostgreSQL these are plain ALTER TABLEs.
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("document_id", ROW_ID, nullable=True))
        batch.add_column(sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_foreign_key("fk_observations_document", "report_documents",
                                 ["document_id"], ["id"])


def downgrade() -> None:
    # Each observation that refers to a document gets its whole report back first.
    bind = op.get_bind()
    meta = sa.MetaData()
    docs = sa.Table("report_documents", meta, sa.Column("id", ROW_ID),
                    sa.Column("body", JSON_DOC))
    obs = sa.Table("observations", meta, sa.Column("id", ROW_ID),
                   sa.Column("document_id", ROW_ID), sa.Column("report", JSON_DOC),
                   sa.Column("evaluated_at", sa.DateTime(timezone=True)),
                   sa.Column("days_left", sa.Integer()))
    bodies = dict(bind.execute(sa.select(docs.c.id, docs.c.body)).all())
    rows = bind.execute(sa.select(obs.c.id, obs.c.document_id, obs.c.evaluated_at,
                                  obs.c.days_left).where(obs.c.document_id.is_not(None))).all()
    for oid, doc_id, evaluated_at, days_left in rows:
        bind.execute(sa.update(obs).where(obs.c.id == oid).values(
            report=_whole(bodies[doc_id], evaluated_at, days_left)))
    with op.batch_alter_table("observations") as batch:
        batch.drop_constraint("fk_observations_document", type_="foreignkey")
        batch.drop_column("evaluated_at")
        batch.drop_column("document_id")
    op.drop_table("report_documents")


def _whole(body: dict[str, object], evaluated_at: object, days_left: object
           ) -> dict[str, object]:
    import datetime as dt

    when = None
    if isinstance(evaluated_at, dt.datetime):
        aware = evaluated_at if evaluated_at.tzinfo else evaluated_at.replace(tzinfo=dt.UTC)
        when = aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, object] = {}
    for key, value in body.items():
        out[key] = value
        if key == "status":
            out["evaluated_at"] = when
        elif key == "breaks_at":
            out["days_left"] = days_left
    return out
