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

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CHUNK = 5000
_SLOTTED = sa.text("slot IS NOT NULL")


def chain_key(shas: Sequence[str]) -> str:
    """The same key as :func:`chainwatch.storage.repo.chain_key` (kept here: a migration
    must not change when the code does)."""
    return hashlib.sha256(",".join(shas).encode("ascii")).hexdigest()


def _chunks(rows: Sequence[dict[str, object]]) -> Iterator[Sequence[dict[str, object]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


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
    """Every observation's ``observation_certs`` rows become a reference to its chain."""
    bind = op.get_bind()
    meta = sa.MetaData()
    links = sa.Table("observation_certs", meta, sa.Column("observation_id", ROW_ID),
                     sa.Column("position", sa.Integer()), sa.Column("sha256", sa.String(64)))
    chains = sa.Table("chains", meta, sa.Column("id", ROW_ID), sa.Column("sha256", sa.String))
    chain_certs = sa.Table("chain_certs", meta, sa.Column("chain_id", ROW_ID),
                           sa.Column("position", sa.Integer()),
                           sa.Column("sha256", sa.String(64)))
    obs = sa.Table("observations", meta, sa.Column("id", ROW_ID),
                   sa.Column("chain_id", ROW_ID))
    # Each observation's chain key (the links come in observation, position order), and
    # each distinct chain's certificates: both fit in memory (an id and a key per
    # observation; chains are as few as the certificates).
    keyed: list[tuple[int, str]] = []
    distinct: dict[str, list[str]] = {}
    current: int | None = None
    shas: list[str] = []

    def close() -> None:
        if current is not None:
            key = chain_key(shas)
            distinct.setdefault(key, list(shas))
            keyed.append((current, key))

    result = bind.execute(
        sa.select(links.c.observation_id, links.c.sha256)
        .order_by(links.c.observation_id, links.c.position)
        .execution_options(yield_per=_CHUNK))
    for oid, sha in result:
        if oid != current:
            close()
            current, shas = oid, []
        shas.append(sha)
    close()
    if not keyed:
        return
    for part in _chunks([{"sha256": key} for key in sorted(distinct)]):
        bind.execute(sa.insert(chains), part)
    ids = {key: int(cid) for cid, key in bind.execute(sa.select(chains.c.id, chains.c.sha256))}
    for part in _chunks([{"chain_id": ids[key], "position": pos, "sha256": sha}
                         for key in sorted(distinct)
                         for pos, sha in enumerate(distinct[key])]):
        bind.execute(sa.insert(chain_certs), part)
    # One UPDATE from a temporary (observation, chain) table: portable, and one statement
    # rather than one per observation.
    mapping = sa.Table("_chainwatch_observation_chain", meta,
                       sa.Column("observation_id", ROW_ID, primary_key=True),
                       sa.Column("chain_id", ROW_ID, nullable=False),
                       prefixes=["TEMPORARY"])
    mapping.create(bind)
    for part in _chunks([{"observation_id": oid, "chain_id": ids[key]}
                         for oid, key in keyed]):
        bind.execute(sa.insert(mapping), part)
    bind.execute(sa.update(obs).values(chain_id=(
        sa.select(mapping.c.chain_id).where(mapping.c.observation_id == obs.c.id)
        .scalar_subquery())).where(obs.c.id.in_(sa.select(mapping.c.observation_id))))
    mapping.drop(bind)


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
