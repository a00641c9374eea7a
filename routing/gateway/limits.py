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
busy one, the tail probe measured: ``python -m bench.tail_probe``.) The Redis counters count quota
leased, so the limit is never exceeded across workers; the price is that quota a worker leased but
did not use by the end of the window is not used by others: at most 1% of the limit per worker.
Measured on the gateway benchmark (``make bench``): two Redis round trips per request were a sixth
of a worker's CPU; a busy key now costs one round trip per slice. Concurrent requests of one key in
one worker share that worker's lease: one lease call is in flight per key and worker, the others
wait for it and take from its slice (when each leased a slice of its own, a burst of 450 took the
whole minute's quota of a 1000 rpm key into one worker, unused, and the other worker's requests got
429). The event loop and the sync callers' threads (DRF views) share one lease table, so a process
holds one lease per key and window, not one per path. Once Redis grants less than asked, the window
is fully leased: the worker refuses that key's requests without asking again until the window ends.

A key made by a key (``created_by_key``) counts in the buckets of every key up its lineage too
(``key_buckets``): its children cannot multiply a key's rate. A request takes from each bucket's
lease or from none, and the slices a chain lacks are leased in one Lua call, all or nothing. The
chain comes with the key from its one lookup statement and is cached with it.

When Redis refuses a lease call (its ``maxclients``) or this process's limiter pool has no
connection free, the request is counted in this process alone (``_admit_local``, with what the
process took from its leases in the window): the limits hold per process rather than not at all.
The process's next lease call that Redis answers adds those counts to Redis's (``Lease.claim``:
no memory beyond the window's counters), apart from the slices it asks for and up to the limit
(``limits_redis._LEASE``): before, once Redis answered, an rpm-1 key's request counted
in-process was followed by one leased from Redis, 2 in the minute.
When Redis is unreachable the limits **fail open**: requests are admitted uncounted until Redis
answers again, when counting resumes in the current window. After a connection error or timeout the
process leaves Redis alone for ``RATE_LIMIT_REDIS_BACKOFF_SECONDS``, then one request probes it, one
probe at a time (``routing.gateway.limits_redis``): before, every request paid up to
``REDIS_CONNECT_TIMEOUT`` while Redis was down. A window this worker already knows to be used up
stays refused until it ends: the key really did spend that minute's quota. Rate limits protect
capacity, not money: credits and key spend limits are held in PostgreSQL, so an outage of Redis can
never let a key spend beyond its balance or limit.
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

from accounts.keys import AuthenticatedKey, RateBound
from routerhub.errors import RateLimited
from routing.gateway.limits_lease import Lease as _Lease
from routing.gateway.limits_lease import Leasing, leases_granted, owing
from routing.gateway.limits_redis import (
    lease_client,
    lease_client_sync,
    lease_input,
    redis_answered,
    redis_failed,
    redis_turn,
)
from routing.gateway.limits_redis import rate_limit_close as rate_limit_close  # re-exported

_WINDOW = 60


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
    # The bucket of a key this key was made from (its label): its 429 names that key, and not its
    # limits nor what is left of them (the whole tree spends them; ``_raise``).
    made_from: str = ""


_local: dict[tuple[str, int], list[int]] = {}  # (bucket tag, window)
_leases: dict[tuple[str, int], _Lease] = {}  # (bucket tag, window)
# Guards _leases and _local: the event loop and sync callers' threads (DRF views under
# WSGI) share them. Held for a few field updates only, never across a Redis call, so taking it on
# the event loop waits at most for another thread's bookkeeping.
_lock = threading.Lock()


def _window() -> tuple[int, int]:
    now = time.time()
    return int(now // _WINDOW), max(1, math.ceil(_WINDOW - now % _WINDOW))


def key_tag(key: AuthenticatedKey, kind: str, up: RateBound | None = None) -> str:
    """A key's bucket (or that of ``up``, a key it was made from): ``kind`` "" is its own (rpm,
    tpm), "s" its router selects. The prefix is random per key, so a reused database id never
    inherits old counters. The braces are a Redis Cluster hash tag, the lineage's root (its first
    ancestor, or the key itself): a chain's script reads every bucket of the chain, and under
    Cluster (or a proxy) keys in different slots were CROSSSLOT, failing open every request of a
    key made by a key. The root, not the first key with a rate limit: an ancestor given (or
    relieved of) an rpm moved the tag and restarted the subtree's counters for the minute."""
    tree = key.rate_ancestors[0].key_id if key.rate_ancestors else key.id
    key_id, prefix = (key.id, key.prefix) if up is None else (up.key_id, up.prefix)
    return f"{{tree{tree}}}:rl{kind}:{key_id}:{prefix}"


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
    reset = {"Retry-After": str(retry_after), "x-ratelimit-reset": _reset_ms(_window()[0])}
    if bucket.made_from:
        # Not the ancestor's limit nor its remainder: its whole tree spends them, and a key's
        # holder could watch its siblings' pace through them (as ``billing.key_windows``).
        what = bucket.counts if reason == 1 else "tokens"
        raise RateLimited(
            f"The key {bucket.made_from} this key was made from has used its {what} per minute:"
            f" a key made by a key counts against that key's rate limits too; retry after"
            f" {retry_after} s.",
            metadata={
                "limited_by": bucket.made_from,
                "limited_on": "requests" if reason == 1 else "tokens",  # what ran out, no numbers
                "retry_after": retry_after,
            },
            headers=reset,
        )
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
        headers=reset | limit_headers | spent,
    )


def key_buckets(key: AuthenticatedKey) -> tuple[Bucket, ...]:
    """The key's own rpm/tpm bucket and those of the keys it was made from (nearest first), each
    counting its requests and tokens: a key made by a key cannot multiply that key's rate. The
    chain comes with the key from its one lookup statement (``accounts.key_lookup``), cached;
    so are the buckets, with the key (``AuthenticatedKey.buckets``), built on its first use."""
    buckets: tuple[Bucket, ...] | None = key.buckets.get("rate")
    if buckets is None:
        buckets = key.buckets["rate"] = _key_buckets(key)
    return buckets


def _key_buckets(key: AuthenticatedKey) -> tuple[Bucket, ...]:
    own = Bucket(
        key_tag(key, ""),
        key.rpm or 0,
        key.tpm or 0,
        metadata={"rpm": key.rpm, "tpm": key.tpm},
        openrouter_names=True,
    )
    made_from = [
        Bucket(key_tag(key, "", up), up.rpm or 0, up.tpm or 0, made_from=up.label)
        for up in reversed(key.rate_ancestors)
        if up.rpm or up.tpm
    ]
    return (own, *made_from)


async def rate_limit_admit(key: AuthenticatedKey, prompt_tokens: int) -> None:
    """Count one request (and its prompt tokens) or raise ``RateLimited`` (429, Retry-After)."""
    await admit_chain(key_buckets(key), prompt_tokens)


async def admit_chain(buckets: tuple[Bucket, ...], prompt_tokens: int) -> None:
    """Count one request in every bucket of ``buckets`` or in none, raising the ``RateLimited``
    of the first one spent. A chain's missing slices are leased in one Lua call; concurrent
    requests of one chain in one worker share the call in flight (on its first bucket's lease)."""
    buckets = tuple(b for b in buckets if b.rpm or b.tpm)
    if not buckets:
        return
    window, retry_after = _window()
    if not settings.REDIS_URL:
        with _lock:
            _admit_local(buckets, prompt_tokens, window, retry_after)
        return
    while True:
        with _lock:
            leases = [_lease(b.tag, window) for b in buckets]
            if _take(leases, buckets, prompt_tokens):
                return
            _refuse_spent(leases, buckets, retry_after)
            head = leases[0]
            fetching = head.fetching
            loop, start = asyncio.get_running_loop(), None
            if fetching is None or fetching.get_loop() is not loop:
                fetching = start = head.fetching = loop.create_future()
        if start is not None:  # outside _lock: an eager task runs _lease_more (it takes _lock) now
            _start(_lease_more(leases, buckets, window, prompt_tokens, start))
        # Shielded: a request that goes away does not cancel the others' lease call.
        leasing = await asyncio.shield(fetching)
        if leasing == "uncounted":
            return  # Redis unreachable: fail open
        if leasing == "in-process":
            with _lock:  # Redis refused, or the pool was busy: limits hold per process
                _admit_local(buckets, prompt_tokens, window, retry_after)
            return


def admit_sync(buckets: tuple[Bucket, ...]) -> None:
    """``admit_chain`` without prompt tokens for sync callers, on the same counters and leases,
    with no event loop. A thread does not wait for a lease call in flight on the event loop (or
    in another thread): it leases too, and both slices land in the one lease, never past the
    limit (Redis counts leases)."""
    buckets = tuple(b for b in buckets if b.rpm or b.tpm)
    if not buckets:
        return
    window, retry_after = _window()
    if not settings.REDIS_URL:
        with _lock:
            _admit_local(buckets, 0, window, retry_after)
        return
    while True:
        with _lock:
            leases = [_lease(b.tag, window) for b in buckets]
            if _take(leases, buckets, 0):
                return
            _refuse_spent(leases, buckets, retry_after)
        turn = redis_turn()
        if turn is None:
            return  # Redis backed off: fail open
        with _lock:
            wanted = _wanted(leases, buckets, 0)
        try:
            _, script = lease_client_sync()
            with _owing(leases, buckets, window) as owed:
                granted = script(*lease_input(_limits(buckets), window, wanted, _WINDOW + 5, owed))
        except (RedisError, OSError) as exc:
            refused = redis_failed(exc, turn)
            if refused:
                with _lock:  # Redis refused: limits hold per process
                    _admit_local(buckets, 0, window, retry_after)
            return
        redis_answered()
        with _lock:
            leases_granted(leases, _rates(buckets), wanted, owed, granted)


def _has(lease: _Lease, bucket: Bucket) -> bool:
    return not ((bucket.rpm and lease.requests < 1) or (bucket.tpm and lease.tokens <= 0))


def _take(leases: list[_Lease], buckets: tuple[Bucket, ...], prompt_tokens: int) -> bool:
    """Admit one request from every lease if each has quota of each limited dimension."""
    if not all(_has(lease, b) for lease, b in zip(leases, buckets, strict=True)):
        return False
    for lease, b in zip(leases, buckets, strict=True):
        lease.requests -= 1 if b.rpm else 0
        lease.tokens -= prompt_tokens if b.tpm else 0
        lease.taken_requests += 1
        lease.taken_tokens += prompt_tokens
    return True


def _refuse_spent(leases: list[_Lease], buckets: tuple[Bucket, ...], retry_after: int) -> None:
    """Raise the 429 of the first bucket whose window this worker knows is spent."""
    for lease, bucket in zip(leases, buckets, strict=True):
        reason = lease.short(bucket.rpm, bucket.tpm)
        if reason:
            _raise(reason, bucket, retry_after)


def _admit_local(
    buckets: tuple[Bucket, ...], prompt_tokens: int, window: int, retry_after: int
) -> None:
    """Count in this process alone (no Redis, or Redis refused): in every bucket, or refuse
    without counting. What the process admitted from its Redis leases in the window counts too:
    an rpm-1 key's leased request, then one Redis refused, were 2 in the minute."""
    if len(_local) > 10_000:
        for stale in [k for k in _local if k[1] < window]:
            del _local[stale]
    counters = [_local.setdefault((b.tag, window), [0, 0]) for b in buckets]
    for bucket, (requests, tokens) in zip(buckets, counters, strict=True):
        lease = _leases.get((bucket.tag, window))
        if lease is not None:
            requests, tokens = requests + lease.taken_requests, tokens + lease.taken_tokens
        if bucket.rpm and requests >= bucket.rpm:
            _raise(1, bucket, retry_after)
        if bucket.tpm and tokens >= bucket.tpm:
            _raise(2, bucket, retry_after)
    for counted in counters:
        counted[0] += 1
        counted[1] += prompt_tokens


async def rate_limit_add_tokens(key: AuthenticatedKey, tokens: int) -> None:
    """Add tokens generated after admission to the current window of the key and of each key
    it was made from with a tpm."""
    if tokens <= 0 or not (key.tpm or any(up.tpm for up in key.rate_ancestors)):
        return  # nothing to count: no buckets built, no lock taken
    window, _ = _window()
    with _lock:
        for bucket in key_buckets(key):
            if not bucket.tpm:
                continue
            if settings.REDIS_URL:
                lease = _lease(bucket.tag, window)
                lease.tokens -= tokens  # paid from the next slice leased
                lease.taken_tokens += tokens
            else:
                _local.setdefault((bucket.tag, window), [0, 0])[1] += tokens


_lease_calls: set[asyncio.Task[None]] = set()  # the lease calls in flight (the loop holds weakly)


def _start(call: Any) -> None:
    task = asyncio.ensure_future(call)
    _lease_calls.add(task)
    task.add_done_callback(_lease_calls.discard)


async def _lease_more(
    leases: list[_Lease],
    buckets: tuple[Bucket, ...],
    window: int,
    prompt_tokens: int,
    done: asyncio.Future[Leasing],
) -> None:
    """Lease the next slices of ``buckets`` in ``window`` (one Lua call); ``done`` (the first
    lease's ``fetching``) says how it ended (``Leasing``)."""
    try:
        leasing: Leasing = "uncounted"  # Redis backed off
        turn = redis_turn()
        if turn is not None:
            with _lock:
                wanted = _wanted(leases, buckets, prompt_tokens)
            limits, (_, script) = _limits(buckets), lease_client()
            try:
                with _owing(leases, buckets, window) as owed:
                    granted = await script(*lease_input(limits, window, wanted, _WINDOW + 5, owed))
            except (RedisError, OSError) as exc:
                leasing = "in-process" if redis_failed(exc, turn) else "uncounted"
            else:
                redis_answered()
                with _lock:
                    leases_granted(leases, _rates(buckets), wanted, owed, granted)
                leasing = "leased"
        done.set_result(leasing)
    except Exception as exc:  # its waiters raise it
        done.set_exception(exc)
    except BaseException:
        done.cancel()
        raise
    finally:
        with _lock:
            if leases[0].fetching is done:
                leases[0].fetching = None


def _wanted(
    leases: list[_Lease], buckets: tuple[Bucket, ...], prompt_tokens: int
) -> list[tuple[int, int]]:
    """The slice to ask each bucket for, under ``_lock`` (none while its lease has quota)."""
    now = time.monotonic()
    return [
        (0, 0) if _has(lease, b) else lease.wants(b.rpm, b.tpm, prompt_tokens, now)
        for lease, b in zip(leases, buckets, strict=True)
    ]


def _owing(leases: list[_Lease], buckets: tuple[Bucket, ...], window: int) -> Any:
    """``limits_lease.owing`` for ``buckets``: their in-process counts in ``window``."""
    counted = [_local.get((b.tag, window), (0, 0)) for b in buckets]
    return owing(leases, _rates(buckets), counted, _lock)


def _limits(buckets: tuple[Bucket, ...]) -> list[tuple[str, int, int]]:
    return [(b.tag, b.rpm, b.tpm) for b in buckets]


def _rates(buckets: tuple[Bucket, ...]) -> list[tuple[int, int]]:
    return [(b.rpm, b.tpm) for b in buckets]


def _lease(tag: str, window: int) -> _Lease:
    """``tag``'s lease in ``window``, for the event loop and sync callers alike (under
    ``_lock``)."""
    lease = _leases.get((tag, window))
    if lease is None:
        if len(_leases) > 10_000:
            for stale in [k for k in _leases if k[1] < window]:
                del _leases[stale]
        lease = _leases[(tag, window)] = _Lease()
    return lease
