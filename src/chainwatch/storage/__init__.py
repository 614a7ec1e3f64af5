"""Storage: SQLAlchemy models, Alembic migrations and the repository.

SQLite by default (a file in the user's data directory), PostgreSQL for production
(``postgresql+psycopg://...``). :class:`Database` is the one entry point; opening it
brings the schema to the newest migration shipped with the package.
"""

from __future__ import annotations

from chainwatch.storage.alerts_repo import AlertsRepo
from chainwatch.storage.db import default_path, normalize_url
from chainwatch.storage.repo import Database, Heartbeat, StoredCertificate, StoredObservation

__all__ = [
    "AlertsRepo",
    "Database",
    "Heartbeat",
    "StoredCertificate",
    "StoredObservation",
    "default_path",
    "normalize_url",
]
