"""Per-key rpm/tpm limits in fixed one-minute windows: Redis when configured, else in-process.

With Redis every worker shares the counters; without it each process counts alone, which is
right for one-process ``make run``. Prompt tokens are counted at admission (an estimate),
completion tokens after the answer.

Workers lease quota from Redis instead of asking per request: a worker takes a slice of the
window's requests and tokens in one Lua call and admits locally until the slice is spent. The
slice starts at one (so small limits are exact, request by request), doubles while a worker
spends each slice within ``_LEASE_PERIOD_S``, and when the worker slows down shrinks to what it
spent in that time at its last pace, always within 1% of the limit. (It used to fall back to one
as soon as a slice lasted over 0.1 s: a key used steadily at concurrency 1 then climbed 1, 2, 4 …
128 and started over, a Redis round trip in ~3% of its requests on an idle machine and ~17% on a
busy one, the tail probe measured: ``python -m bench.tail_probe``.) The Redis counters count quota leased, so
the limit is never exceeded across workers; the price is that quota a worker leased but did not
use by the end of the window is not used by others: at most 1% of the limit per worker. Measured
on the gateway benchmark (``make bench``): two Redis round trips per request were a sixth of a
worker's CPU; a busy key now costs one round trip per slice. Concurrent requests of one key in
one worker share that worker's lease: one lease call is in flight per key and worker, the others
wait for it and take from its slice (when each leased a slice of its own, a burst of 450 took the
whole minute's quota of a 1000 rpm key into one worker, unused, and the other worker's requests
got 429). The event loop and the sync callers' threads (DRF views) share one lease table, so
a process holds one lease per key and window, not one per path. Once Redis grants less than
asked, the window is fully leased: the worker refuses that key's requests without asking again
until the window ends.

When Redis is unreachable the limits **fail open**: requests are admitted uncounted until Redis
answers again, when counting resumes in the current window. After a connection error or timeout
the process leaves Redis alone for ``RATE_LIMIT_REDIS_BACKOFF_SECONDS``, then one request probes
it, one probe at a time (``routing.gateway.limits_redis``): before, every request paid up to
``REDIS_CONNECT_TIMEOUT`` while Redis was down. A window this worker already knows to be used up
stays refused until it ends: the key really did spend that minute's quota. Rate limits protect capacity, not money: credits and key spend limits are held
in PostgreSQL, so an outage of Redis can never let a key spend beyond its balance or limit.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from accounts.keys import AuthenticatedKey
from routerhub.errors import RateLimited
from routing.gateway.limits_redis import (
    lease_client,
    lease_client_sync,
    redis_answered,
    redis_backed_off,
    redis_failed,
)
from routing.gateway.limits_redis import rate_limit_close as rate_limit_close  # re-exported

_WINDOW = 60
_LEASE_CAP = 0.01  # of the limit, per lease
_LEASE_PERIOD_S = 1.0  # a slice spent within this grows the next one; else it is sized to it


class _Lease:
    """This worker's unspent slice of one key's window (tokens may run into debt: completion
    tokens are only known after admission; the next slice pays the debt first)."""

    __slots__ = (
        "fetching",
        "leased_at",
        "request_slice",
        "requests",
        "requests_full_at",
        "token_slice",
        "tokens",
        "tokens_full_at",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.tokens = 0
        self.request_slice = 1
        self.token_slice = 0
        self.leased_at = -1.0
        # The lease call in flight, shared by every request of this key in this worker; its
        # result is False when Redis was unreachable.
        self.fetching: asyncio.Future[bool] | None = None
        # The rpm (tpm) at which Redis granted less than asked: the window is fully leased.
        self.requests_full_at = 0
        self.tokens_full_at = 0

    def short(self, rpm: int, tpm: int) -> int:
        """1 (2) when a request needs quota of rpm (tpm) that the window no longer has; else 0."""
        if rpm and self.requests < 1 and self.requests_full_at == rpm:
            return 1
        if tpm and self.tokens <= 0 and self.tokens_full_at == tpm:
            return 2
        return 0

    def wants(self, rpm: int, tpm: int, prompt_tokens: int) -> tuple[int, int]:
        now = time.monotonic()
        lasted = now - self.leased_at  # how long the last slice lasted (huge on the first)
        self.leased_at = now
        want_requests = want_tokens = 0
        if rpm and self.requests < 1:
            cap = max(1, int(rpm * _LEASE_CAP))
            self.request_slice = _next_slice(self.request_slice, lasted, 1, cap)
            want_requests = self.request_slice
        if tpm and self.tokens <= 0:
            cap = max(1, int(tpm * _LEASE_CAP))
            floor = max(1, prompt_tokens)
            self.token_slice = _next_slice(self.token_slice, lasted, floor, cap)
            want_tokens = self.token_slice - self.tokens  # and the debt
        return want_requests, want_tokens


def _next_slice(previous: int, lasted: float, floor: int, cap: int) -> int:
    """Double a slice spent within ``_LEASE_PERIOD_S``; else what the last pace spends in it."""
    fast = lasted < _LEASE_PERIOD_S
    return min(cap, max(floor, previous * 2 if fast else int(previous * _LEASE_PERIOD_S / lasted)))


@dataclass(frozen=True, slots=True)
class Bucket:
    """A rate-limit bucket as its caller describes it: ``tag`` names its counters (one per key
    or person, and kind), ``rpm`` and ``tpm`` are its limits a minute (0: none). Its 429 says
    "{who} is limited to {rpm} {counts} per minute{note}" (or "{tpm} tokens") with ``metadata``."""

    tag: str
    rpm: int
    tpm: int = 0
    who: str = "This key"
    counts: str = "requests"
    note: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # OpenRouter's x-ratelimit-limit and -remaining name the key's own request limit: only the
    # key's own bucket sends them.
    openrouter_names: bool = False


_local: dict[tuple[str, int], list[int]] = {}  # (bucket tag, window)
_leases: dict[tuple[str, int], _Lease] = {}  # (bucket tag, window)
# Guards _leases and _local: the event loop and sync callers' threads (DRF views under
# WSGI) share them. Held for a few field updates only, never across a Redis call, so taking it on
# the event loop waits at most for another thread's bookkeeping.
_lock = threading.Lock()


def _window() -> tuple[int, int]:
    now = time.time()
    return int(now // _WINDOW), max(1, math.ceil(_WINDOW - now % _WINDOW))


def key_tag(key: AuthenticatedKey, kind: str) -> str:
    """A key's bucket: ``kind`` "" is its own (rpm, tpm), "s" its router selects. The prefix is
    random per key, so a reused database id never inherits old counters."""
    return f"rl{kind}:{key.id}:{key.prefix}"


def _keys(tag: str, window: int) -> tuple[str, str]:
    # The braces keep both counters in one Redis Cluster slot for the script.
    return f"rh:{{{tag}:{window}}}:r", f"rh:{{{tag}:{window}}}:t"


def rate_limit_headers(key: AuthenticatedKey) -> dict[str, str]:
    """The key's limits and the end of the current window, in OpenAI's ``x-ratelimit-*`` names
    and OpenRouter's (``X-RateLimit-Reset`` in epoch milliseconds); nothing for an unlimited key.
    No ``remaining`` on admitted requests: with Redis, workers lease quota, so no worker knows
    the key's exact remainder (429s say 0)."""
    if not key.rpm and not key.tpm:
        return {}
    window, seconds = _window()
    return {"x-ratelimit-reset": _reset_ms(window)} | _limit_headers(
        key.rpm or 0, key.tpm or 0, seconds, openrouter_names=True
    )


def _reset_ms(window: int) -> str:
    """The end of ``window`` in epoch milliseconds (OpenRouter's ``X-RateLimit-Reset``)."""
    return str((window + 1) * _WINDOW * 1000)


def _limit_headers(rpm: int, tpm: int, seconds: int, *, openrouter_names: bool) -> dict[str, str]:
    headers = {}
    if rpm:
        if openrouter_names:
            headers["x-ratelimit-limit"] = str(rpm)
        headers["x-ratelimit-limit-requests"] = str(rpm)
        headers["x-ratelimit-reset-requests"] = f"{seconds}s"
    if tpm:
        headers["x-ratelimit-limit-tokens"] = str(tpm)
        headers["x-ratelimit-reset-tokens"] = f"{seconds}s"
    return headers


def _raise(reason: int, bucket: Bucket, retry_after: int) -> None:
    """The 429 of ``bucket`` spent in requests (``reason`` 1) or tokens (2), in its own words."""
    what = f"{bucket.rpm} {bucket.counts}" if reason == 1 else f"{bucket.tpm} tokens"
    spent = {
        "x-ratelimit-remaining-requests" if reason == 1 else "x-ratelimit-remaining-tokens": "0"
    }
    if reason == 1 and bucket.openrouter_names:
        spent["x-ratelimit-remaining"] = "0"
    limit_headers = _limit_headers(
        bucket.rpm, bucket.tpm, retry_after, openrouter_names=bucket.openrouter_names
    )
    raise RateLimited(
        f"{bucket.who} is limited to {what} per minute{bucket.note}; retry after {retry_after} s.",
        metadata=bucket.metadata | {"retry_after": retry_after},
        headers={"Retry-After": str(retry_after), "x-ratelimit-reset": _reset_ms(_window()[0])}
        | limit_headers
        | spent,
    )


async def rate_limit_admit(key: AuthenticatedKey, prompt_tokens: int) -> None:
    """Count one request (and its prompt tokens) or raise ``RateLimited`` (429, Retry-After)."""
    own = Bucket(
        key_tag(key, ""),
        key.rpm or 0,
        key.tpm or 0,
        metadata={"rpm": key.rpm, "tpm": key.tpm},
        openrouter_names=True,
    )
    await admit(own, prompt_tokens)


async def admit(bucket: Bucket, prompt_tokens: int) -> None:
    """Count one request (and its prompt tokens) in ``bucket`` or raise its ``RateLimited``."""
    rpm, tpm = bucket.rpm, bucket.tpm
    if not rpm and not tpm:
        return
    window, retry_after = _window()
    if not settings.REDIS_URL:
        with _lock:
            _admit_local(bucket, prompt_tokens, window, retry_after)
        return
    while True:
        with _lock:
            lease = _lease(bucket.tag, window)
            if _take(lease, rpm, tpm, prompt_tokens):
                return
            reason = lease.short(rpm, tpm)
            if reason:
                _raise(reason, bucket, retry_after)
            fetching = lease.fetching
            loop, start = asyncio.get_running_loop(), None
            if fetching is None or fetching.get_loop() is not loop:
                fetching = start = lease.fetching = loop.create_future()
        if start is not None:  # outside _lock: an eager task runs _lease_more (it takes _lock) now
            _start(_lease_more(lease, bucket, window, prompt_tokens, start))
        # Shielded: a request that goes away does not cancel the others' lease call.
        if not await asyncio.shield(fetching):
            return  # Redis unreachable: fail open


def admit_sync(bucket: Bucket) -> None:
    """``admit`` without prompt tokens for sync callers, on the same counters and leases, with
    no event loop. A thread does not wait for a lease call in flight on the event loop (or in
    another thread): it leases too, and both slices land in the one lease, never past the limit
    (Redis counts leases)."""
    rpm, tpm = bucket.rpm, bucket.tpm
    if not rpm and not tpm:
        return
    window, retry_after = _window()
    if not settings.REDIS_URL:
        with _lock:
            _admit_local(bucket, 0, window, retry_after)
        return
    while True:
        with _lock:
            lease = _lease(bucket.tag, window)
            if _take(lease, rpm, tpm, 0):
                return
            reason = lease.short(rpm, tpm)
            if reason:
                _raise(reason, bucket, retry_after)
            wanted = lease.wants(rpm, tpm, 0)
        if redis_backed_off():
            return  # Redis backed off: fail open
        try:
            _, script = lease_client_sync()
            granted = script(keys=list(_keys(bucket.tag, window)), args=_lease_args(bucket, wanted))
        except (RedisError, OSError) as exc:
            redis_failed(exc)
            return
        redis_answered()
        with _lock:
            _granted(lease, bucket, wanted, granted)


def _take(lease: _Lease, rpm: int, tpm: int, prompt_tokens: int) -> bool:
    """Admit one request from ``lease`` if it has quota of each limited dimension."""
    if (rpm and lease.requests < 1) or (tpm and lease.tokens <= 0):
        return False
    lease.requests -= 1 if rpm else 0
    lease.tokens -= prompt_tokens if tpm else 0
    return True


def _admit_local(bucket: Bucket, prompt_tokens: int, window: int, retry_after: int) -> None:
    """Count in this process alone (no Redis)."""
    rpm, tpm = bucket.rpm, bucket.tpm
    if len(_local) > 10_000:
        for stale in [k for k in _local if k[1] < window]:
            del _local[stale]
    counters = _local.setdefault((bucket.tag, window), [0, 0])
    if rpm and counters[0] >= rpm:
        _raise(1, bucket, retry_after)
    if tpm and counters[1] >= tpm:
        _raise(2, bucket, retry_after)
    counters[0] += 1
    counters[1] += prompt_tokens


async def rate_limit_add_tokens(key: AuthenticatedKey, tokens: int) -> None:
    """Add tokens generated after admission to the key's current window."""
    if not key.tpm or tokens <= 0:
        return
    window, _ = _window()
    with _lock:
        if settings.REDIS_URL:
            _lease(key_tag(key, ""), window).tokens -= tokens  # paid from the next slice leased
            return
        _local.setdefault((key_tag(key, ""), window), [0, 0])[1] += tokens


_lease_calls: set[asyncio.Task[None]] = set()  # the lease calls in flight (the loop holds weakly)


def _start(call: Any) -> None:
    task = asyncio.ensure_future(call)
    _lease_calls.add(task)
    task.add_done_callback(_lease_calls.discard)


async def _lease_more(
    lease: _Lease, bucket: Bucket, window: int, prompt_tokens: int, done: asyncio.Future[bool]
) -> None:
    """Lease the next slice of ``bucket`` in ``window`` for ``lease`` (one Lua call); ``done``
    (``lease.fetching``) is set False when Redis is unreachable or backed off."""
    try:
        with _lock:
            wanted = lease.wants(bucket.rpm, bucket.tpm, prompt_tokens)
        leased = False
        if not redis_backed_off():
            _, script = lease_client()
            try:
                granted = await script(
                    keys=list(_keys(bucket.tag, window)), args=_lease_args(bucket, wanted)
                )
            except (RedisError, OSError) as exc:
                redis_failed(exc)
            else:
                redis_answered()
                with _lock:
                    _granted(lease, bucket, wanted, granted)
                leased = True
        done.set_result(leased)
    except Exception as exc:  # its waiters raise it
        done.set_exception(exc)
    except BaseException:
        done.cancel()
        raise
    finally:
        with _lock:
            if lease.fetching is done:
                lease.fetching = None


def _lease_args(bucket: Bucket, wanted: tuple[int, int]) -> list[int]:
    return [bucket.rpm, bucket.tpm, wanted[0], wanted[1], _WINDOW + 5]


def _granted(lease: _Lease, bucket: Bucket, wanted: tuple[int, int], granted: Any) -> None:
    """Add what Redis granted to ``lease``."""
    lease.requests += int(granted[0])
    lease.tokens += int(granted[1])
    # Redis grants what is left when that is less than asked: nothing is left after it.
    if int(granted[0]) < wanted[0]:
        lease.requests_full_at = bucket.rpm
    if int(granted[1]) < wanted[1]:
        lease.tokens_full_at = bucket.tpm


def _lease(tag: str, window: int) -> _Lease:
    """``tag``'s lease in ``window``, for the event loop and sync callers alike (under ``_lock``)."""
    lease = _leases.get((tag, window))
    if lease is None:
        if len(_leases) > 10_000:
            for stale in [k for k in _leases if k[1] < window]:
                del _leases[stale]
        lease = _leases[(tag, window)] = _Lease()
    return lease
