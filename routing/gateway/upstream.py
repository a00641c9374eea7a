"""The one pooled HTTP client per process and how upstream failures are classified."""

from __future__ import annotations

import asyncio
import logging

import httpx
from django.conf import settings

# httpx logs every request at INFO: on the hot path that is a log line per request.
logging.getLogger("httpx").setLevel(logging.WARNING)


class _State:
    client: httpx.AsyncClient | None = None
    loop: asyncio.AbstractEventLoop | None = None


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if _State.client is None or _State.loop is not loop:
        limits = httpx.Limits(
            max_connections=settings.GATEWAY_MAX_CONNECTIONS,
            max_keepalive_connections=settings.GATEWAY_MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        _State.client = httpx.AsyncClient(limits=limits, timeout=upstream_timeout(), http2=False)
        _State.loop = loop
    return _State.client


async def http_client_close() -> None:
    if _State.client is not None:
        await _State.client.aclose()
        _State.client = None


def upstream_timeout() -> httpx.Timeout:
    # httpx's read timeout bounds every wait for bytes: the first byte and each later chunk.
    return httpx.Timeout(
        connect=settings.GATEWAY_CONNECT_TIMEOUT,
        read=settings.GATEWAY_FIRST_BYTE_TIMEOUT,
        write=settings.GATEWAY_CONNECT_TIMEOUT,
        pool=settings.GATEWAY_CONNECT_TIMEOUT,
    )


# Statuses after which another endpoint may well succeed: our credential or the model is
# wrong at that provider, it is overloaded or down. Other 4xx are the client's request.
RETRYABLE_STATUSES = frozenset({401, 402, 403, 404, 408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES
