"""HTTP for the management API: one retry policy and one error mapping for sync and async.

Retries: 429 and 503 (honouring ``Retry-After``, unless the server says ``x-should-retry:
false``) and connection failures, with exponential backoff and jitter between attempts. A
request that may have reached the server (a read timeout, a dropped connection) is retried only
when it is a ``GET``: retrying a ``POST`` could, say, create a second key.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from routerhub_client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    error_class_for,
)

VERSION = "0.1.0"
RETRY_STATUSES = frozenset({429, 503})
# Failures before the request left this machine: safe to send again whatever the method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class ClientOptions:
    """What both clients share: where the server is, how to authenticate, how hard to retry."""

    base_url: str
    api_key: str
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    max_retries: int = 2
    backoff_base: float = 0.5
    max_backoff: float = 30.0
    default_headers: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": f"routerhub-client/{VERSION}",
            **self.default_headers,
        }

    def transport_retry_wait(
        self, attempt: int, method: str, exc: httpx.TransportError
    ) -> float | None:
        """Seconds before resending after a transport failure, or None to give up."""
        if method != "GET" and not isinstance(exc, NOT_SENT):
            return None
        return self.retry_wait(attempt, None)

    def retry_wait(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None not to retry."""
        if attempt > self.max_retries:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            if response.headers.get("x-should-retry", "").lower() == "false":
                return None
            after = retry_after_seconds(response)
            if after is not None:
                return min(after, self.max_backoff)
        backoff = self.backoff_base * 2 ** (attempt - 1)
        return float(min(backoff * (0.5 + random.random() / 2), self.max_backoff))


def normalize_base_url(base_url: str) -> str:
    """The server's root: ``https://host`` (a trailing ``/`` or ``/v1`` is dropped)."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1") if url.endswith("/v1") else url


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def error_from_response(response: httpx.Response) -> APIStatusError:
    """The typed exception for an error response, with API.md's error fields."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or (body if isinstance(body, str) and body else "")
    return error_class_for(response.status_code)(
        str(message or response.reason_phrase),
        status=response.status_code,
        type=str(error.get("type") or "error"),
        param=error.get("param"),
        metadata=error.get("metadata") if isinstance(error.get("metadata"), dict) else None,
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after_seconds(response),
        body=body,
    )


def relative_path(url: str) -> str:
    """A pagination link as a path relative to the server, whatever host the server saw."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def clean_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the ones left as None."""
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None}


def pause(seconds: float) -> None:
    """Wait before a retry. Its own name so a test replaces this wait, not ``time.sleep``
    for every thread in the process."""
    time.sleep(seconds)


async def pause_async(seconds: float) -> None:
    """The asynchronous twin of ``pause``."""
    await asyncio.sleep(seconds)


class SyncTransport:
    """Sends management requests with retries; raises typed errors for error statuses."""

    def __init__(self, options: ClientOptions, http_client: httpx.Client | None = None) -> None:
        self.options = options
        self.http = http_client or httpx.Client(timeout=options.timeout)
        self._base = normalize_base_url(options.base_url)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            rewind_files(kwargs)
            try:
                response = self.http.request(
                    method, self._base + path, headers=self.options.headers(), **kwargs
                )
            except httpx.TransportError as exc:
                wait = self.options.transport_retry_wait(attempt, method, exc)
                if wait is None:
                    raise connection_error(method, path, exc) from exc
                pause(wait)
                continue
            if response.is_success:
                return response
            wait = self.options.retry_wait(attempt, response)
            if wait is None:
                raise error_from_response(response)
            pause(wait)

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """The asynchronous twin of ``SyncTransport``."""

    def __init__(
        self, options: ClientOptions, http_client: httpx.AsyncClient | None = None
    ) -> None:
        self.options = options
        self.http = http_client or httpx.AsyncClient(timeout=options.timeout)
        self._base = normalize_base_url(options.base_url)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            rewind_files(kwargs)
            try:
                response = await self.http.request(
                    method, self._base + path, headers=self.options.headers(), **kwargs
                )
            except httpx.TransportError as exc:
                wait = self.options.transport_retry_wait(attempt, method, exc)
                if wait is None:
                    raise connection_error(method, path, exc) from exc
                await pause_async(wait)
                continue
            if response.is_success:
                return response
            wait = self.options.retry_wait(attempt, response)
            if wait is None:
                raise error_from_response(response)
            await pause_async(wait)

    async def close(self) -> None:
        await self.http.aclose()


def connection_error(method: str, path: str, exc: httpx.TransportError) -> APIConnectionError:
    kind = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return kind(f"{method} {path}: {type(exc).__name__}: {exc}")


def rewind_files(kwargs: dict[str, Any]) -> None:
    """Uploads are sent again from their first byte on a retry."""
    for _name, spec in (kwargs.get("files") or {}).items():
        handle = spec[1] if isinstance(spec, tuple) else spec
        if hasattr(handle, "seek"):
            handle.seek(0)
