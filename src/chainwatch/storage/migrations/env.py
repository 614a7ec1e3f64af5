"""Alembic environment: runs on the connection chainwatch hands over in
``config.attributes["connection"]``, or on ``sqlalchemy.url`` when Alembic's own
command line is pointed at an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from chainwatch.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can ALTER little: later migrations rebuild tables in batches. Its DDL
        # is transactional (given chainwatch's explicit BEGIN), so each upgrade is atomic.
        render_as_batch=sqlite,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            # chainwatch migrates SQLite with foreign keys unenforced (a table rebuild
            # would cascade deletes otherwise): they are all checked before the commit.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migration left {len(broken)} rows with a broken "
                                   f"foreign key, e.g. in table {broken[0][0]}")


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


run()
