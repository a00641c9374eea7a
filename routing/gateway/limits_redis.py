"""The rate limiter's Redis (``routing.gateway.limits``): its lease script, its clients (one per
event loop, one for sync callers) and the per-process back-off while Redis is unreachable.

During an outage every lease call used to pay up to ``REDIS_CONNECT_TIMEOUT`` (2 s) before the
limiter failed open, on every request. Now a connection error or timeout backs Redis off for
``RATE_LIMIT_REDIS_BACKOFF_SECONDS``: requests are admitted uncounted without trying it (the
limits fail open, as before), then one request probes it, and the others keep skipping until
that probe ends: one probe is in flight per process, across threads and the event loop, however
long it takes (a Redis that accepts but never replies costs it a reply timeout,
``REDIS_SOCKET_TIMEOUT``, as long as the default back-off). The outage is logged once as it
starts and once as it ends.

Only a Redis that does not answer is an outage. A server that answers with a refusal, its
``maxclients`` reached ("max number of clients reached", which a flood of connections elsewhere
can provoke), is up: its open connections still count, so that request alone is counted in
this process (its chain's buckets, as without Redis) and nothing backs off (before, the refusal
flipped the whole process into uncounted admission for the back-off). Likewise when this
process's own pool of ``RATE_LIMIT_REDIS_MAX_CONNECTIONS`` is busy past
``RATE_LIMIT_REDIS_POOL_WAIT_SECONDS`` (it was unbounded: a burst of distinct keys opened a
connection each; then its wait was ``REDIS_SOCKET_TIMEOUT`` and such requests were admitted
uncounted: thousands of requests of keys a key made, each chain its own lease call, made a
parent's rpm stop binding and every request wait 5 s). Every lease call is a single attempt, so a
probe lasts at most a connect and a reply timeout: redis-py retries when ``REDIS_URL``'s query
asks it to (``retry_on_timeout``, ``retry_on_error``: they win over the client's arguments), and
the ``Redis()`` constructor's own default is 3 retries with sleeps of up to seconds."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

from routerhub.redis_clients import redis_timeouts

logger = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0
# Longer than any probe: a connect and a reply timeout (a lease call is never retried).
_PROBE_STALE_S = 60.0
# Redis's answer to a connection past its ``maxclients``: a refusal, not an outage.
_MAXCLIENTS = "max number of clients reached"
# KEYS: per bucket (a key and the keys it was made from), its requests and tokens leased in this
# window. ARGV: ttl, then per bucket rpm, tpm, requests wanted, tokens wanted (0: none), requests
# owed, tokens owed (its process's in-process count not yet in Redis: ``Lease.claim``). What is
# owed is added first, best effort, up to the limit, and never refuses anything: a counter already
# at its limit has no room for it and needs none. Then grants each what is wanted or what is left
# of its limit, all in one step: when any bucket wanted has nothing left, nothing is leased from
# any (no quota taken for a request that cannot go), and the script answers 0 for the buckets
# spent and -1 for the others; 0 for a dimension not wanted (its counter not even read when it
# owes nothing). The owed charged follow, per key.
# (Owed inside the all-or-nothing ask livelocked: a full bucket that owed but wanted no slice made
# every call short, and its waiter, still holding a slice, asked again until the window ended.)
_LEASE = """
local grants, charged, short = {}, {}, false
for i = 1, #KEYS do
  local j, d = math.floor((i - 1) / 2), (i - 1) % 2
  local limit, want = tonumber(ARGV[2 + 6 * j + d]), tonumber(ARGV[4 + 6 * j + d])
  local owed, grant, charge = tonumber(ARGV[6 + 6 * j + d]), 0, 0
  if limit > 0 and (want > 0 or owed > 0) then
    local left = limit - tonumber(redis.call('GET', KEYS[i]) or '0')
    charge = math.max(0, math.min(owed, left))
    if charge > 0 then
      redis.call('INCRBY', KEYS[i], charge)
      redis.call('EXPIRE', KEYS[i], ARGV[1])
    end
    if want > 0 then
      grant = math.min(want, left - charge)
      if grant <= 0 then grant, short = 0, true end
    end
  end
  grants[i], charged[i] = grant, charge
end
for i = 1, #KEYS do
  if short and grants[i] > 0 then
    grants[i] = -1
  elseif grants[i] > 0 then
    redis.call('INCRBY', KEYS[i], grants[i])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  end
  grants[#KEYS + i] = charged[i]
end
return grants
"""


def lease_keys(tag: str, window: int) -> tuple[str, str]:
    """A bucket's counters in ``window``: requests and tokens leased. ``tag`` carries its Redis
    Cluster hash tag (``limits.bucket_tag``): a chain's script reads all its buckets in one slot."""
    return f"rh:{tag}:{window}:r", f"rh:{tag}:{window}:t"


def lease_input(
    limits: list[tuple[str, int, int]],
    window: int,
    wanted: list[tuple[int, int]],
    ttl: int,
    owed: list[tuple[int, int]] | None = None,
) -> tuple[list[str], list[int]]:
    """The lease script's KEYS and ARGV for buckets (tag, rpm, tpm) wanting (requests, tokens)
    and owing (requests, tokens) (none by default)."""
    keys = [key for tag, _, _ in limits for key in lease_keys(tag, window)]
    args = [ttl]
    owed = owed or [(0, 0)] * len(limits)
    for (_, rpm, tpm), want, owes in zip(limits, wanted, owed, strict=True):
        args += [rpm, tpm, *want, *owes]
    return keys, args


class _RedisState:
    loop: asyncio.AbstractEventLoop | None = None
    client: Any = None
    script: Any = None


class _SyncRedisState:
    """The sync path's client (DRF views): one per process, thread-safe through its pool. Under
    WSGI ``async_to_sync`` made an event loop, and so a client, per select, never closed."""

    url = ""
    client: Any = None
    script: Any = None
    lock = threading.Lock()  # two threads' first selects make one client


class _Outage:
    """This process's view of Redis: unreachable since ``since`` (None: it answers); no lease
    call before ``retry_at`` (monotonic). ``lock`` is held for these few fields only."""

    since: float | None = None
    retry_at = 0.0
    probing_since: float | None = None  # the probe in flight; its failure or answer ends it
    last_warning = 0.0
    lock = threading.Lock()


class PoolExhausted(MaxConnectionsError):
    """Every connection of this process's limiter pool stayed busy past the wait."""


class _AsyncPool(redis.asyncio.BlockingConnectionPool):
    """At most ``max_connections``; a caller waits ``timeout`` for one, then ``PoolExhausted``
    (redis-py says a plain ``ConnectionError``, the same as a Redis that is down)."""

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise PoolExhausted(f"all {self.max_connections} connections busy") from exc
            raise


def _client_async() -> redis.asyncio.Redis:
    # A lease call is one attempt within the client's timeouts (module docstring).
    pool = _AsyncPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.RATE_LIMIT_REDIS_MAX_CONNECTIONS,
        timeout=settings.RATE_LIMIT_REDIS_POOL_WAIT_SECONDS,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        **_limiter_options(),
    )
    return redis.asyncio.Redis(connection_pool=pool)


def _limiter_options() -> dict[str, Any]:
    """What both limiter clients are built with: the app's timeouts and one handshake command.
    A new connection sends one command and reads its answer: a server at its ``maxclients``
    writes its refusal and closes, and redis-py reads the refusal as that answer (its own
    ``ConnectionError("max number of clients reached")``). redis-py's default handshake sends
    two CLIENT SETINFO back to back: the second write hit the closed socket and asyncio reported
    "Connection lost", the refusal unread (an outage). With no command at all, the pool found
    the refusal waiting on a new connection and said "Connection not ready" (an outage too)."""
    return {"client_name": "routerhub-rate-limiter", "driver_info": None} | redis_timeouts()


def _client_sync() -> redis.Redis:
    # Threads (the DRF views) bound the sync client's connections; they are never retried either.
    return redis.Redis.from_url(
        settings.REDIS_URL,
        retry=redis.retry.Retry(NoBackoff(), 0),
        **_limiter_options(),
    )


def lease_client() -> tuple[Any, Any]:
    """The running loop's client and its lease script (a loop's connections answer it only)."""
    loop = asyncio.get_running_loop()
    if _RedisState.client is None or _RedisState.loop is not loop:
        _RedisState.client = _client_async()
        _RedisState.script = _RedisState.client.register_script(_LEASE)
        _RedisState.loop = loop
    return _RedisState.client, _RedisState.script


def lease_client_sync() -> tuple[Any, Any]:
    """The sync callers' client and its lease script (the same Lua as the event loop's)."""
    with _SyncRedisState.lock:
        if _SyncRedisState.client is None or _SyncRedisState.url != settings.REDIS_URL:
            if _SyncRedisState.client is not None:
                _SyncRedisState.client.close()  # REDIS_URL changed (tests): its pool goes
            _SyncRedisState.client = _client_sync()
            _SyncRedisState.script = _SyncRedisState.client.register_script(_LEASE)
            _SyncRedisState.url = settings.REDIS_URL
        return _SyncRedisState.client, _SyncRedisState.script


async def rate_limit_close() -> None:
    """Close this loop's client only: one another loop made (another server in the process) is
    its own, and closing it from here never finished (its connections answer that loop only)."""
    if _RedisState.client is not None and _RedisState.loop is asyncio.get_running_loop():
        await _RedisState.client.aclose()
        _RedisState.client = None


@dataclass(frozen=True, slots=True)
class RedisTurn:
    """A lease call allowed to try Redis: ``probe`` is when it started probing an outage (the
    one probe in flight), None for a call while Redis answers."""

    probe: float | None = None


def redis_turn() -> RedisTurn | None:
    """None while Redis is backed off (the caller fails open without trying it). The first
    caller past the back-off probes it; the others keep skipping until that probe ends (its
    failure or answer: ``redis_failed``, ``redis_answered``), so an outage costs one probe at a
    time, not one per request or per key: against a Redis that accepts but never replies, one
    request per back-off waits a reply timeout. (Before, the next probe was due one back-off
    after this one started, as long as a reply timeout: hung probes overlapped and stalled the
    key's requests.) A probe that never ended (cancelled) frees the next after ``_PROBE_STALE_S``."""
    if _Outage.since is None:
        return _ANSWERING
    with _Outage.lock:
        now = time.monotonic()
        if _Outage.since is None:
            return _ANSWERING
        probing = _Outage.probing_since is not None and now - _Outage.probing_since < _PROBE_STALE_S
        if probing or now < _Outage.retry_at:
            return None
        _Outage.probing_since = now
        return RedisTurn(now)


_ANSWERING = RedisTurn()


def redis_failed(exc: Exception, turn: RedisTurn) -> bool:
    """A lease call (``turn``) failed. True when Redis is up but refused it, or this process's
    pool had no connection free (``redis_refused``): the caller counts its request in-process.
    False: its request is admitted uncounted; a connection error or timeout backs Redis off and
    logs the outage once, another Redis error backs nothing off (both log at most every 10 s).
    Only the probe's own failure ends the probe: an ordinary call's refusal, ending while a
    probe hangs, used to let a second probe start beside it."""
    now = time.monotonic()
    refused = redis_refused(exc)
    outage = not refused and isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
    backoff = settings.RATE_LIMIT_REDIS_BACKOFF_SECONDS
    with _Outage.lock:
        if turn.probe is not None and _Outage.probing_since == turn.probe:
            _Outage.probing_since = None
        started = outage and _Outage.since is None
        if outage:
            _Outage.since = now if started else _Outage.since
            _Outage.retry_at = now + backoff
        warn = not outage and now - _Outage.last_warning >= _WARN_EVERY_S
        _Outage.last_warning = now if warn else _Outage.last_warning
    if warn:
        counted = "counting requests in this process" if refused else "admitting requests uncounted"
        logger.warning("rate limits unavailable (Redis: %s); %s", exc, counted)
    if started:
        logger.warning(
            "rate limits unavailable (Redis unreachable: %s); admitting requests uncounted, and"
            " trying Redis again every %s s",
            exc,
            backoff,
        )
    return refused


def redis_refused(exc: Exception) -> bool:
    """Whether a connection error says Redis is up but refused this connection (its
    ``maxclients``), or this process's pool had none free: neither is an outage."""
    return isinstance(exc, MaxConnectionsError) or _MAXCLIENTS in str(exc)


def redis_answered() -> None:
    """A lease call succeeded: the outage, if there was one, ends (logged once)."""
    if _Outage.since is None:
        return
    with _Outage.lock:
        since, _Outage.since, _Outage.retry_at = _Outage.since, None, 0.0
        _Outage.probing_since = None
    if since is not None:
        logger.warning(
            "Redis answers again after %.0f s; rate limits count again", time.monotonic() - since
        )
