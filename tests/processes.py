"""Helpers for tests that start server or worker processes against the test database."""

from __future__ import annotations

from django.db import connection


def database_url() -> str:
    """The pytest-django test database as a ``DATABASE_URL`` another process can use."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{db['USER']}{password}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"
