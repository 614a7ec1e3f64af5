"""Engines and migrations: which database, how it is tuned, and bringing it to head.

* ``None`` means the default: a SQLite file in the user's data directory
  (``$XDG_DATA_HOME/chainwatch/chainwatch.sqlite``, usually
  ``~/.local/share/chainwatch/chainwatch.sqlite``).
* A plain path means a SQLite file there.
* ``postgresql://`` and ``postgres://`` URLs use the psycopg 3 driver.

SQLite connections run in WAL mode (readers never block the writer), enforce foreign
keys, wait up to :data:`SQLITE_BUSY_TIMEOUT_MS` for a lock instead of failing, and
sync fully on commit. chainwatch issues ``BEGIN`` itself (the SQLAlchemy recipe for
pysqlite) so that writes take the write lock up front with ``BEGIN IMMEDIATE`` and
migrations are transactional.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

if TYPE_CHECKING:
    from alembic.config import Config

from chainwatch.errors import StorageError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK = 0x63776D67  # "cwmg": PostgreSQL advisory lock serialising migrations
BEGIN_OPTION = "chainwatch_sqlite_begin"
"""Execution option naming the SQLite ``BEGIN`` flavour (``IMMEDIATE`` for writes)."""


def default_path() -> Path:
    return platformdirs.user_data_path("chainwatch") / "chainwatch.sqlite"


def normalize_url(url: str | Path | None) -> str:
    """The SQLAlchemy URL for ``url`` (see the module docstring)."""
    if url is None:
        url = default_path()
    text = str(url)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().absolute()}"
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix) :]
    return text


def redacted(url: str) -> str:
    """``url`` without its password, for logs and reprs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy can read: show its scheme only
        return url.split("://", 1)[0] + "://..." if "://" in url else "<unreadable URL>"


SUPPORTED = ("sqlite", "postgresql")


def first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (no SQL, no parameters: they may hold
    report data; no SQLAlchemy background link)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(original or exc).__name__}: {line}" if line else type(original or exc).__name__


def storage_error(url: str, exc: BaseException) -> StorageError:
    """A one-line :class:`StorageError` for a failure while opening or using ``url``."""
    shown = redacted(url)
    if isinstance(exc, OSError):
        return StorageError(shown, f"cannot create or open the file: {exc.strerror or exc}"
                            f"{f' ({exc.filename})' if exc.filename else ''}")
    if isinstance(exc, (ImportError, NoSuchModuleError)):
        return StorageError(shown, "unsupported database (use a SQLite path or "
                            "postgresql+psycopg://USER@HOST/DB)")
    if isinstance(exc, ArgumentError):
        return StorageError(shown, f"not a database URL: {first_line(exc)}")
    if isinstance(exc, OperationalError):
        message = first_line(exc)
        if make_url(url).get_backend_name() == "sqlite":
            hint = "check that the file's directory exists and is writable, and the disk not full"
        else:
            hint = "check that the server is running and the URL (host, port, user, database)"
        return StorageError(shown, f"{message}; {hint}")
    return StorageError(shown, f"database error: {first_line(exc)}")


def make_engine(url: str) -> Engine:
    """An engine for a normalised URL, tuned for its backend. Raises
    :class:`StorageError` for a URL chainwatch cannot use."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise storage_error(url, exc) from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise StorageError(redacted(url), "unsupported database (use a SQLite path or "
                           "postgresql+psycopg://USER@HOST/DB)")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(url, exc) from None
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _tune(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration, as Alembic reads the scripts."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


_SCRIPT = re.compile(r"(\d{4})_\w+\.py")


@cache
def named_head() -> str:
    """The head revision as the scripts' file names give it: each migration is
    ``NNNN_what.py`` with ``revision = "NNNN"`` and ``down_revision`` the one before
    (a test holds every script to that), so the head is the highest number. Reading a
    directory costs nothing next to Alembic loading every script."""
    numbers = [m.group(1) for p in (MIGRATIONS / "versions").iterdir()
               if (m := _SCRIPT.fullmatch(p.name))]
    return max(numbers)


def _at_head(engine: Engine) -> bool:
    """Whether the database is already at the head revision, by one plain query of
    Alembic's version table (no Alembic import, no script loaded): what nearly every
    open finds. A database without the table (new, or not chainwatch's) is not."""
    with engine.connect() as conn:  # a database that cannot be opened fails here
        try:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except DBAPIError:
            return False  # no such table: the migrations create it
        finally:
            conn.rollback()
    return [row[0] for row in rows] == [named_head()]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``: a no-op when it is there already.

    On PostgreSQL an advisory lock makes concurrent openers (workers starting together)
    migrate one at a time; SQLite's ``BEGIN IMMEDIATE`` does the same for a file.
    A database already at head is recognised by one query, without Alembic.
    """
    if revision == "head" and _at_head(engine):
        return
    _migrate(engine, revision, down=False)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (each migration's ``downgrade`` puts back
    what its upgrade moved: nothing stored is lost)."""
    _migrate(engine, revision, down=True)


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite rebuilds a table to alter it (copy, ``DROP TABLE``, rename); with foreign
    keys enforced the ``DROP`` deletes every row first, and ``ON DELETE CASCADE`` would
    take the rows referring to them along (a rebuilt ``observations`` emptied
    ``observation_certs``). So migrations run with enforcement off, as SQLite's manual
    prescribes for schema changes; ``env.py`` checks every foreign key before the
    migration's transaction commits, and enforcement is back on after it."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None  # a checked-out connection has its driver connection
    raw.execute("PRAGMA foreign_keys = OFF")  # outside any transaction: it takes effect
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        raw.execute("PRAGMA foreign_keys = ON")


def _migrate(engine: Engine, revision: str, *, down: bool) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        conn = conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        if postgres:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
            conn.commit()
        try:
            config = _config(conn)
            heads = set(MigrationContext.configure(conn).get_current_heads())
            conn.commit()
            wanted = set(ScriptDirectory.from_config(config).get_revisions(revision))
            if heads != {script.revision for script in wanted}:
                with _sqlite_foreign_keys_off(conn):
                    if down:
                        command.downgrade(config, revision)
                    else:
                        command.upgrade(config, revision)
                    if conn.in_transaction():
                        conn.commit()
            if conn.in_transaction():
                conn.commit()
        finally:
            if conn.in_transaction():
                conn.rollback()
            if postgres:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")
                conn.commit()
