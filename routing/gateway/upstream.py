"""The one pooled HTTP client per process and how upstream failures are classified."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings

from routing.gateway.transport import LeanTransport

# httpx logs every request at INFO: on the hot path that is a log line per request.
logging.getLogger("httpx").setLevel(logging.WARNING)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: one client serves every organization, so a cookie one
    provider set for one request was sent with everybody's later requests to that host; and
    parsing every response's cookies (``http.cookiejar``) was ~9% of a worker's CPU per chat
    request (issue 21)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


# Encodings RouterHub decodes itself, in bounded pieces (``_decoded``): zlib is asked for at most
# ``_PIECE`` bytes per call, so no read of the wire (the transport reads up to 256 KiB; gzip
# expands ~1000x) becomes more than that in memory at once. zstd is refused: one frame of a few
# bytes may declare gigabytes. At most one coding is allowed: ``gzip, gzip`` (decoded twice)
# would multiply the expansion.
DECODED_ENCODINGS = frozenset({"identity", "gzip", "deflate"})
ACCEPT_ENCODING = "gzip, deflate"
_PIECE = 64 * 1024


class ResponseTooLarge(httpx.DecodingError):
    """An upstream answer past ``GATEWAY_MAX_RESPONSE_BYTES`` once decoded."""


def encoding_check(response: httpx.Response) -> str:
    """The answer's one coding (``identity``, ``gzip`` or ``deflate``); an encoding whose
    decoding is unbounded, or more than one coding, is refused before any of it is read."""
    named = response.headers.get("content-encoding", "")
    codings = [e.strip() for e in named.lower().split(",") if e.strip() not in ("", "identity")]
    if len(codings) > 1 or not set(codings) <= DECODED_ENCODINGS:
        raise httpx.DecodingError(
            f"the answer's Content-Encoding {named!r} is not one RouterHub decodes",
            request=response.request,
        )
    return codings[0] if codings else "identity"


async def _decoded(response: httpx.Response) -> AsyncIterator[bytes]:
    """The answer's bytes decoded in pieces of at most ``_PIECE`` bytes (httpx's own decoding
    turns one read into its whole expansion before anyone can count it)."""
    coding = encoding_check(response)
    if coding == "identity":
        async for raw in response.aiter_raw():
            yield raw
        return
    wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    first = True
    try:
        async for raw in response.aiter_raw():
            if first and coding == "deflate" and raw[:1] and raw[0] & 0x0F != 8:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as httpx reads it
            first = False
            while True:  # until the read is consumed and zlib holds nothing more for it
                piece = inflater.decompress(raw, _PIECE)
                raw = inflater.unconsumed_tail
                if piece:
                    yield piece
                if not raw and len(piece) < _PIECE:
                    break
        tail = inflater.flush()
    except zlib.error as exc:
        raise httpx.DecodingError(
            f"the answer is not valid {coding}: {exc}", request=response.request
        ) from exc
    if tail:
        yield tail


async def body_chunks(response: httpx.Response, limit: int | None = None) -> AsyncIterator[bytes]:
    """The decoded answer, raising ``ResponseTooLarge`` past ``limit`` (by default
    ``GATEWAY_MAX_RESPONSE_BYTES``) instead of reading on."""
    limit = settings.GATEWAY_MAX_RESPONSE_BYTES if limit is None else limit
    size = 0
    async for chunk in _decoded(response):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(
                f"the answer is larger than {limit} bytes", request=response.request
            )
        yield chunk


async def body_prefix(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the decoded answer (an error's text); the rest is not read."""
    kept = b""
    async for chunk in _decoded(response):
        kept += chunk[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return kept


class Client(httpx.AsyncClient):
    """httpx's client without cookies (``_NoCookies``), leaving no reference cycle behind a
    response it has read: httpx binds each response's stream to the response
    (``BoundAsyncStream``), a cycle that kept the request's ~25 objects (request, response,
    headers, URL, streams) for the garbage collector — all the young collections a chat request
    caused, a few of the slowest requests at c=1 (issue 21). Every answer is bounded: an
    encoding outside ``DECODED_ENCODINGS`` is refused before it is read, and a whole answer past
    ``GATEWAY_MAX_RESPONSE_BYTES`` raises ``ResponseTooLarge`` (a stream is read through
    ``body_chunks``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _NoCookies()
        self.headers["accept-encoding"] = ACCEPT_ENCODING

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        stream = kwargs.pop("stream", False)
        response = await super().send(request, stream=True, **kwargs)
        try:
            encoding_check(response)
            if not stream:
                # What ``Response.aread`` does, with a limit.
                response._content = b"".join([c async for c in body_chunks(response)])
        except BaseException:
            await response.aclose()
            response_release(response)
            raise
        if not stream:
            await response.aclose()
            response_release(response)  # read and closed: its stream has nothing left to give
        return response


@functools.lru_cache(maxsize=4096)
def upstream_url(url: str) -> httpx.URL:
    """``url`` parsed once (httpx parses a string URL on every request: half of building one).
    URLs are immutable; a few per endpoint, bounded by the cache's size."""
    return httpx.URL(url)


_RELEASED = httpx.ByteStream(b"")


def response_release(response: httpx.Response) -> None:
    """Unbind a closed response from its stream (the cycle above); call after ``aclose``."""
    response.stream = _RELEASED


class _State:
    client: httpx.AsyncClient | None = None
    loop: asyncio.AbstractEventLoop | None = None


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if _State.client is None or _State.loop is not loop:
        _State.client = _client_create()
        _State.loop = loop
    return _State.client


def _client_create() -> httpx.AsyncClient:
    if _proxy_configured():
        # Egress through a proxy: httpx's own transport honours HTTP(S)_PROXY and NO_PROXY.
        limits = httpx.Limits(
            max_connections=settings.GATEWAY_MAX_CONNECTIONS,
            max_keepalive_connections=settings.GATEWAY_MAX_CONNECTIONS,
            keepalive_expiry=30,
        )
        return Client(limits=limits, timeout=upstream_timeout(), http2=False)
    transport = LeanTransport(max_connections=settings.GATEWAY_MAX_CONNECTIONS, keepalive_expiry=30)
    return Client(transport=transport, timeout=upstream_timeout())


def _proxy_configured() -> bool:
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in names)


async def http_client_close() -> None:
    """Close this loop's client only (one another loop made is that loop's own)."""
    if _State.client is not None and _State.loop is asyncio.get_running_loop():
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
