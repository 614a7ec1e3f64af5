"""Alembic migrations of chainwatch's database, shipped with the package and applied
by :func:`chainwatch.storage.db.upgrade` whenever a database is opened."""
