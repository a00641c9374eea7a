"""The environment RouterHub's settings read: where the checkout and its var/ are, which
environment this is, and the small typed helpers that refuse bad values at boot."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()

ROUTERHUB_ENV = env.str("ROUTERHUB_ENV", default="development")
if ROUTERHUB_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(
        f"ROUTERHUB_ENV must be development, test or production, not {ROUTERHUB_ENV!r}"
    )
PRODUCTION = ROUTERHUB_ENV == "production"
VAR_DIR = Path(env.str("ROUTERHUB_VAR_DIR", default=str(BASE_DIR / "var")))


def _dev_secret(name: str) -> str:
    """A per-checkout random secret kept in var/ (gitignored), so nothing secret is committed."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / f".{name}"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    """A strict boolean: a typo such as DEBUG=nope stops the boot instead of meaning False."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {raw!r}")


def _decimal(name: str, default: str) -> Decimal:
    raw = env.str(name, default=default)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number, not {raw!r}") from None
    if value < 0:
        raise ImproperlyConfigured(f"{name} must not be negative")
    return value


def positive_int(name: str, default: int) -> int:
    """A whole number of at least 1: zero, a negative or a word stops the boot naming it."""
    raw = str(env.str(name, default=str(default))).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be at least 1, not {value}")
    return value


def _secret(name: str) -> str:
    value = str(env.str(name, default=""))
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when ROUTERHUB_ENV=production")
    return _dev_secret(name.lower())
