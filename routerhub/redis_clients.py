"""The app's Redis clients, each with bounded timeouts: ``REDIS_CONNECT_TIMEOUT`` to connect and
``REDIS_SOCKET_TIMEOUT`` for each reply. Without them a Redis address that drops packets instead
of refusing (a firewall, a host gone behind a route) held the caller for minutes on connect (the
kernel's SYN retries), and one that stops answering held it forever on a reply: the rate
limiter, meant to fail open, hung every request instead. Scripts (``bench/``) use them
too: importing ``routerhub`` points ``DJANGO_SETTINGS_MODULE`` at its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import redis
    import redis.asyncio


def redis_timeouts(*, block_s: float = 0.0) -> dict[str, Any]:
    """The timeouts for a client whose longest command blocks ``block_s`` on the server
    (``XREADGROUP … BLOCK``, ``BRPOP``): its reply may come that much later."""
    return {
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT + block_s,
    }


def redis_client(url: str = "", *, block_s: float = 0.0) -> redis.Redis:
    """A sync client of ``url`` (``REDIS_URL`` by default)."""
    import redis

    return redis.Redis.from_url(url or settings.REDIS_URL, **redis_timeouts(block_s=block_s))


def redis_client_async(url: str = "") -> redis.asyncio.Redis:
    """An asyncio client of ``url`` (``REDIS_URL`` by default), for the event loop using it."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url or settings.REDIS_URL, **redis_timeouts())
