"""Served chains stored once: observations refer to them, and a leaner slot index.

A steady scan's observation served the same chain as its target's previous one. Its
certificate SHA-256s used to be written again for every observation (two or three
``observation_certs`` rows of 64-character hashes, with two index entries each: about half
of a steady observation's size). Now each distinct chain is one ``chains`` row, keyed by
the SHA-256 of its certificates' SHA-256s in served order, with its ``chain_certs``; an
observation refers to it with ``observations.chain_id`` (NULL: nothing served). Chains,
like certificates, are never deleted. ``observation_certs`` is moved into them and
dropped; a downgrade writes it back from them.

``uq_observations_target_slot`` becomes partial (``WHERE slot IS NOT NULL``): only the
rows of distributed batches have a slot, and only they are constrained by it, so the
other rows need no entry in it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(JSONB(), "postgresql")
_CHUNK = 5000
_IN_CHUNK = 500
_SLOTTED = sa.text("slot IS NOT NULL")


def chain_key(shas: Sequence[str]) -> str:
    """The same key as :func:`chainwatch.storage.repo.chain_key` (kept here: a migration
    must not change when the code does)."""
    return hashlib.sha256(",".join(shas).encode("ascii")).hexdigest()


def upgrade() -> None:
    op.create_table(
        "chains",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.UniqueConstraint("sha256", name="uq_chains_sha256"),
    )
    op.create_table(
        "chain_certs",
        sa.Column("chain_id", ROW_ID, sa.ForeignKey("chains.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("certificates.sha256"),
                  nullable=False),
    )
    op.create_index("ix_chain_certs_sha256", "chain_certs", ["sha256"])
    op.drop_index("uq_observations_target_slot", table_name="observations")
    # On SQLite the batch rebuilds the table to add the foreign key; on PostgreSQL it is
    # a plain ALTER TABLE.
    with op.batch_alter_table("observations") as batch:
        batch.add_column(sa.Column("chain_id", ROW_ID, nullable=True))
        batch.create_foreign_key("fk_observations_chain", "chains", ["chain_id"], ["id"])
    op.create_index("uq_observations_target_slot", "observations", ["target_id", "slot"],
                    unique=True, sqlite_where=_SLOTTED, postgresql_where=_SLOTTED)
    _move_links_into_chains()
    op.drop_index("ix_observation_certs_sha256", table_name="observation_certs")
    op.drop_table("observation_certs")


def _move_links_into_chains() -> None:
    """Every observation's ``observation_certs`` rows become a reference to its chain.
    Memory holds the distinct chains only (as few as the certificates); the observations
    stream through in chunks."""
    bind = op.get_bind()
    meta = sa.MetaData()
    links = sa.Table("observation_certs", meta, sa.Column("observation_id", ROW_ID),
                     sa.Column("position", sa.Integer()), sa.Column("sha256", sa.String(64)))
    chains = sa.Table("chains", meta, sa.Column("id", ROW_ID), sa.Column("sha256", sa.String))
    chain_certs = sa.Table("chain_certs", meta, sa.Column("chain_id", ROW_ID),
                           sa.Column("position", sa.Integer()),
                           sa.Column("sha256", sa.String(64)))
    obs = sa.Table("observations", meta, sa.Column("id", ROW_ID),
                   sa.Column("chain_id", ROW_ID), sa.Column("leaf_sha256", sa.String(64)),
                   sa.Column("report", JSON_DOC), sa.Column("document_id", ROW_ID))
    docs = sa.Table("report_documents", meta, sa.Column("id", ROW_ID),
                    sa.Column("body", JSON_DOC))
    certificates = sa.Table("certificates", meta, sa.Column("sha256", sa.String(64)))
    # (observation, chain) pairs go to a temporary table, then one UPDATE sets them all.
    mapping = sa.Table("_chainwatch_observation_chain", meta,
                       sa.Column("observation_id", ROW_ID, primary_key=True),
                       sa.Column("chain_id", ROW_ID, nullable=False),
                       prefixes=["TEMPORARY"])
    mapping.create(bind)
    ids: dict[str, int] = {}  # chain key -> id (the table is new: ids are given here)
    new_chains: list[dict[str, object]] = []
    new_certs: list[dict[str, object]] = []
    pairs: list[dict[str, object]] = []

    def flush() -> None:
        for table, rows in ((chains, new_chains), (chain_certs, new_certs), (mapping, pairs)):
            if rows:
                bind.execute(sa.insert(table), rows)
                rows.clear()

    def refer(oid: int, shas: list[str]) -> None:
        key = chain_key(shas)
        cid = ids.get(key)
        if cid is None:
            cid = ids[key] = len(ids) + 1
            new_chains.append({"id": cid, "sha256": key})
            new_certs.extend({"chain_id": cid, "position": pos, "sha256": sha}
                             for pos, sha in enumerate(shas))
        pairs.append({"observation_id": oid, "chain_id": cid})
        if len(pairs) >= _CHUNK:
            flush()

    # The links in pages of whole observations (keyset on the observation id), so that
    # memory holds one page of them.
    after = -1
    while True:
        page = bind.execute(
            sa.select(links.c.observation_id, links.c.sha256)
            .where(links.c.observation_id > after)
            .order_by(links.c.observation_id, links.c.position).limit(_CHUNK)).all()
        if not page:
            break
        if len(page) == _CHUNK and page[0][0] != page[-1][0]:
            page = [row for row in page if row[0] != page[-1][0]]  # the rest comes next
        grouped: dict[int, list[str]] = {}
        for oid, sha in page:
            grouped.setdefault(int(oid), []).append(sha)
        for oid, shas in grouped.items():
            refer(oid, shas)
        after = max(grouped)
    flush()
    _recover_lost_links(bind, obs, docs, certificates, mapping, refer)
    flush()
    if ids and bind.dialect.name == "postgresql":  # ids given explicitly: move the sequence
        bind.execute(sa.text("SELECT setval(pg_get_serial_sequence('chains', 'id'), :n)"),
                     {"n": len(ids)})
    bind.execute(sa.update(obs).values(chain_id=(
        sa.select(mapping.c.chain_id).where(mapping.c.observation_id == obs.c.id)
        .scalar_subquery())).where(obs.c.id.in_(sa.select(mapping.c.observation_id))))
    mapping.drop(bind)


def _recover_lost_links(bind: sa.Connection, obs: sa.Table, docs: sa.Table,
                        certificates: sa.Table, mapping: sa.Table,
                        refer: Callable[[int, list[str]], None]) -> None:
    """Chains the SQLite rebuild of revision 0006 deleted, read back from the reports.

    That rebuild ran with foreign keys enforced: dropping the old ``observations`` table
    cascaded to every ``observation_certs`` row, so observations stored before it served
    a leaf (``leaf_sha256``) but have no chain rows. Their report lists the served chain
    in served order (``chain[].sha256``, as the writer stored it): it is taken when it
    starts with that leaf and every certificate in it is stored."""
    lost = [int(oid) for (oid,) in bind.execute(
        sa.select(obs.c.id).where(obs.c.leaf_sha256.is_not(None),
                                  obs.c.id.not_in(sa.select(mapping.c.observation_id)))
        .order_by(obs.c.id))]
    for start in range(0, len(lost), _IN_CHUNK):
        chunk = lost[start : start + _IN_CHUNK]
        found = bind.execute(
            sa.select(obs.c.id, obs.c.leaf_sha256, obs.c.report, docs.c.body)
            .outerjoin(docs, docs.c.id == obs.c.document_id)
            .where(obs.c.id.in_(chunk))).all()
        served: dict[int, list[str]] = {}
        for oid, leaf, report, body in found:
            document = body if body is not None else report
            chain = document.get("chain") if isinstance(document, dict) else None
            if not isinstance(chain, list):
                continue
            shas: list[str] = [c["sha256"] for c in chain
                               if isinstance(c, dict) and isinstance(c.get("sha256"), str)]
            if shas and len(shas) == len(chain) and shas[0] == leaf:
                served[int(oid)] = shas
        wanted = sorted({sha for shas in served.values() for sha in shas})
        stored: set[str] = set()
        for part in range(0, len(wanted), _IN_CHUNK):
            stored.update(bind.execute(sa.select(certificates.c.sha256).where(
                certificates.c.sha256.in_(wanted[part : part + _IN_CHUNK]))).scalars())
        for oid in sorted(served):
            if set(served[oid]) <= stored:
                refer(oid, served[oid])


def downgrade() -> None:
    op.create_table(
        "observation_certs",
        sa.Column("observation_id", ROW_ID,
                  sa.ForeignKey("observations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("certificates.sha256"),
                  nullable=False),
    )
    op.create_index("ix_observation_certs_sha256", "observation_certs", ["sha256"])
    # Every observation's chain rows back, from the chain it refers to.
    op.execute(
        "INSERT INTO observation_certs (observation_id, position, sha256) "
        "SELECT o.id, c.position, c.sha256 FROM observations o "
        "JOIN chain_certs c ON c.chain_id = o.chain_id"
    )
    op.drop_index("uq_observations_target_slot", table_name="observations")
    with op.batch_alter_table("observations") as batch:
        batch.drop_constraint("fk_observations_chain", type_="foreignkey")
        batch.drop_column("chain_id")
    op.create_index("uq_observations_target_slot", "observations", ["target_id", "slot"],
                    unique=True)
    op.drop_index("ix_chain_certs_sha256", table_name="chain_certs")
    op.drop_table("chain_certs")
    op.drop_table("chains")
