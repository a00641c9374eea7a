"""Per-key rpm/tpm limits in fixed one-minute windows: Redis when configured, else in-process.

With Redis every worker shares the counters (one Lua round trip per request, only for keys that
have a limit); without it each process counts alone, which is right for one-process ``make run``.
Prompt tokens are counted at admission (an estimate), completion tokens after the answer.

When Redis is unreachable the limits **fail open**: requests are admitted uncounted (a warning is
logged at most every 10 s per process) until Redis answers again, when counting resumes in the
current window. Rate limits protect capacity, not money: credits and key spend limits are held
in PostgreSQL, so an outage of Redis can never let a key spend beyond its balance or limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from accounts.keys import AuthenticatedKey
from routerhub.errors import RateLimited

logger = logging.getLogger(__name__)

_WINDOW = 60
_WARN_EVERY_S = 10.0
_ADMIT = """
local requests = redis.call('INCR', KEYS[1])
if requests == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if (rpm > 0 and requests > rpm) or (tpm > 0 and tokens >= tpm) then
  redis.call('DECR', KEYS[1])
  if rpm > 0 and requests > rpm then return 1 end
  return 2
end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 0
"""


class _RedisState:
    loop: asyncio.AbstractEventLoop | None = None
    client: Any = None
    script: Any = None


_local: dict[tuple[int, int], list[int]] = {}
_last_warning = [0.0]


def _fail_open(exc: Exception) -> None:
    now = time.monotonic()
    if now - _last_warning[0] >= _WARN_EVERY_S:
        _last_warning[0] = now
        logger.warning("rate limits unavailable (Redis: %s); admitting requests uncounted", exc)


def _redis() -> tuple[Any, Any]:
    loop = asyncio.get_running_loop()
    if _RedisState.client is None or _RedisState.loop is not loop:
        import redis.asyncio as redis_asyncio

        _RedisState.client = redis_asyncio.from_url(settings.REDIS_URL)
        _RedisState.script = _RedisState.client.register_script(_ADMIT)
        _RedisState.loop = loop
    return _RedisState.client, _RedisState.script


def _window() -> tuple[int, int]:
    now = time.time()
    return int(now // _WINDOW), max(1, math.ceil(_WINDOW - now % _WINDOW))


def _keys(key: AuthenticatedKey, window: int) -> tuple[str, str]:
    # The prefix is random per key, so a reused database id never inherits old counters; the
    # braces keep both counters in one Redis Cluster slot for the script.
    tag = f"{{rl:{key.id}:{key.prefix}:{window}}}"
    return f"rh:{tag}:r", f"rh:{tag}:t"


def _raise(reason: int, key: AuthenticatedKey, retry_after: int) -> None:
    what = f"{key.rpm} requests" if reason == 1 else f"{key.tpm} tokens"
    raise RateLimited(
        f"This key is limited to {what} per minute; retry after {retry_after} s.",
        metadata={"rpm": key.rpm, "tpm": key.tpm, "retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


async def rate_limit_admit(key: AuthenticatedKey, prompt_tokens: int) -> None:
    """Count one request (and its prompt tokens) or raise ``RateLimited`` (429, Retry-After)."""
    if not key.rpm and not key.tpm:
        return
    window, retry_after = _window()
    rpm, tpm = key.rpm or 0, key.tpm or 0
    if settings.REDIS_URL:
        _, script = _redis()
        requests_key, tokens_key = _keys(key, window)
        try:
            reason = int(
                await script(
                    keys=[requests_key, tokens_key], args=[rpm, tpm, prompt_tokens, _WINDOW + 5]
                )
            )
        except (RedisError, OSError) as exc:
            _fail_open(exc)
            return
        if reason:
            _raise(reason, key, retry_after)
        return
    if len(_local) > 10_000:
        for stale in [k for k in _local if k[1] < window]:
            del _local[stale]
    counters = _local.setdefault((key.id, window), [0, 0])
    if rpm and counters[0] >= rpm:
        _raise(1, key, retry_after)
    if tpm and counters[1] >= tpm:
        _raise(2, key, retry_after)
    counters[0] += 1
    counters[1] += prompt_tokens


async def rate_limit_add_tokens(key: AuthenticatedKey, tokens: int) -> None:
    """Add tokens generated after admission to the key's current window."""
    if not key.tpm or tokens <= 0:
        return
    window, _ = _window()
    if settings.REDIS_URL:
        client, _ = _redis()
        _, tokens_key = _keys(key, window)
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.incrby(tokens_key, tokens)
                pipe.expire(tokens_key, _WINDOW + 5)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            _fail_open(exc)
        return
    _local.setdefault((key.id, window), [0, 0])[1] += tokens


async def rate_limit_close() -> None:
    if _RedisState.client is not None:
        await _RedisState.client.aclose()
        _RedisState.client = None
