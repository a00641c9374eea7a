"""Helpers for tests that start server or worker processes against the test database."""

from __future__ import annotations

import os
from pathlib import Path

from django.db import connection


def database_url() -> str:
    """The pytest-django test database as a ``DATABASE_URL`` another process can use."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{db['USER']}{password}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


def production_environment(var_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment as a production boot of the settings needs it: the required
    secrets as placeholders, no Stripe or billing setting inherited, ``extra`` on top."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "BILLING_"))}
    return inherited | {
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "ROUTERHUB_ENV": "production",
        "ROUTERHUB_VAR_DIR": str(var_dir),
        "SECRET_KEY": "s" * 50,
        "API_KEY_PEPPER": "p" * 50,
        "ALLOWED_HOSTS": "routerhub.example",
        "PROVIDER_KEYS_ENCRYPTION_KEYS": "x" * 43 + "=",
        **extra,
    }
