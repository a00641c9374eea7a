"""The environment RouterHub's settings read: where the checkout and its var/ are, which
environment this is, and the small typed helpers that refuse bad values at boot."""

from __future__ import annotations

import math
import os
import secrets
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

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


def _number(name: str, default: str, parse: Any, kind: str, least: Any, rule: str) -> Any:
    """The setting parsed by ``parse``: not ``kind`` (NaN and Infinity are not), or below
    ``least``, stops the boot naming the setting."""
    raw = str(env.str(name, default=default)).strip()
    try:
        value = parse(raw)
    except (ValueError, InvalidOperation):
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}") from None
    if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}")
    if value < least:
        raise ImproperlyConfigured(f"{name} {rule}, not {raw}")
    return value


def _decimal(name: str, default: str) -> Decimal:
    return Decimal(_number(name, default, Decimal, "a decimal number", 0, "must not be negative"))


def positive_int(name: str, default: int) -> int:
    """A whole number of at least 1: zero, a negative or a word stops the boot naming it."""
    return int(_number(name, str(default), int, "a whole number", 1, "must be at least 1"))


def positive_float(name: str, default: float) -> float:
    """A number above 0 (a timeout: 0 would mean "never wait"); else the boot stops naming it."""
    value = float(_number(name, str(default), float, "a number", 0, "must not be negative"))
    if value == 0:
        raise ImproperlyConfigured(f"{name} must be more than 0")
    return value


# Every Redis client's timeouts (routerhub/redis_clients.py, the cache, the Celery broker):
# connecting, and waiting for a reply beyond what a blocking read blocks.
REDIS_CONNECT_TIMEOUT = positive_float("REDIS_CONNECT_TIMEOUT", 2.0)
REDIS_SOCKET_TIMEOUT = positive_float("REDIS_SOCKET_TIMEOUT", 5.0)


def _secret(name: str) -> str:
    value = str(env.str(name, default=""))
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when ROUTERHUB_ENV=production")
    return _dev_secret(name.lower())
