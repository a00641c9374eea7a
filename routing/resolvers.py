"""Bounded blocking name lookups (``routing.egress``: save-time URL checks, webhook deliveries,
and the gateway's connections to a tenant's own hosts through ``lookup_async``).

``getaddrinfo`` takes no timeout, so a lookup runs in one of ``RESOLVER_THREADS`` threads of the
process and its caller stops waiting when its time is up; the thread stays busy until the
system resolver gives up (10-60 s). So that stalled names cannot take every thread, and no
caller is ever blamed for someone else's stall:

- an IP literal (any spelling ``getaddrinfo`` reads as numeric) is answered at once, in the
  caller's thread, never through the pool;
- a name whose lookup timed out in the last ``STALLED_NAME_SECONDS`` fails at once
  (``NameStalled``) without taking a thread (at most ``STALLED_NAMES_KEPT`` names remembered);
- an organization (``tenant``) has at most one unfinished lookup at a time: a further one fails
  at once (``ResolverBusy`` with ``tenant_host``) until its earlier lookup ends;
- a lookup never queues: with every thread busy it fails at once (``ResolverBusy``).

``lookup_async`` (the gateway, on its event loop) uses a pool of its own (``_Gateway``: the
gateway's ``GATEWAY_DNS_THREADS``), so stalled save-time checks never fail a connection, nor the
gateway's lookups a save, and its rules differ:

- connections to the same name and port share its unfinished lookup (single flight): a burst of
  one tenant's connections is one lookup, each waiting for its answer within its own timeout;
- an organization has at most ``per_tenant`` (``GATEWAY_DNS_PER_ORGANIZATION``) unfinished
  lookups of other names: a further one fails at once naming those names;
- a name is remembered as stalled only when a lookup of it ran its full limit, measured from
  that lookup's start (a connection that joined late or had less time blames no name), and a
  lookup that answers forgets it (in either pool).

All of it per process: a forked worker starts with a pool and bookkeeping of its own.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

RESOLVER_THREADS = 4  # name lookups running at once per process
STALLED_NAME_SECONDS = 60.0  # how long a name whose lookup timed out fails at once
STALLED_NAMES_KEPT = 1024  # stalled names remembered per process (least recent forgotten)
BUSY_RETRY_AFTER = 10  # seconds a caller refused for want of a thread is told to wait

Infos = list[tuple[Any, ...]]


class NameStalled(TimeoutError):
    """The name's lookup timed out moments ago; it was not tried again."""


class ResolverBusy(Exception):
    """No lookup was started: ``tenant_host`` names the organization's own unfinished lookup(s)
    (in the pool that was asked), or is ``None`` when every thread of that pool is busy."""

    def __init__(
        self, host: str, tenant_host: str | None, *, threads: int = RESOLVER_THREADS, what: str = ""
    ) -> None:
        self.host, self.tenant_host = host, tenant_host
        if tenant_host is None:
            why = f"every one of the {threads} {what}name resolver threads is busy"
        else:
            why = f"an earlier lookup of {tenant_host} for this organization has not finished"
        super().__init__(f"{host} was not looked up: {why}")


def resolve(host: str, port: int) -> Infos:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _numeric(host: str, port: int) -> Infos | None:
    """The answer for an IP literal (without any lookup), ``None`` for a name. ``getaddrinfo`` is
    also what reads 2130706433, 0x7f.1 or 0177.0.0.1 as 127.0.0.1, exactly as the connection
    would, so no numeric spelling reaches the pool or escapes the address check."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return None


class _Resolvers:
    """The save-time pool and what it is doing, and the names that stalled (both pools);
    everything here and in ``_Gateway`` is changed under ``lock``."""

    lock = threading.Lock()
    pool: concurrent.futures.ThreadPoolExecutor | None = None
    running = 0  # lookups started and not finished (each holds a thread)
    # organization -> the name its unfinished lookup resolves
    tenants: dict[object, str] = {}
    stalled: collections.OrderedDict[str, float] = collections.OrderedDict()  # name -> until

    @classmethod
    def _refuse_stalled(cls, host: str) -> None:
        until = cls.stalled.get(host.lower())
        if until is not None and until > time.monotonic():
            raise NameStalled(f"{host} did not resolve in time moments ago")

    @classmethod
    def _start(cls, host: str, port: int, tenant: object) -> concurrent.futures.Future[Infos]:
        if cls.pool is None:
            cls.pool = concurrent.futures.ThreadPoolExecutor(
                RESOLVER_THREADS, thread_name_prefix="resolve"
            )
        cls._refuse_stalled(host)
        if tenant is not None and tenant in cls.tenants:
            raise ResolverBusy(host, cls.tenants[tenant])
        if cls.running >= RESOLVER_THREADS:
            raise ResolverBusy(host, None)
        cls.running += 1
        started = cls.pool.submit(cls._run, host, port, tenant)
        if tenant is not None:  # before ``_run`` can end: it takes ``lock`` to forget it
            cls.tenants[tenant] = host
        return started

    @classmethod
    def _run(cls, host: str, port: int, tenant: object) -> Infos:
        return _resolve_then(host, port, lambda: cls._forget(tenant))

    @classmethod
    def _forget(cls, tenant: object) -> None:
        cls.running -= 1
        if tenant is not None:
            cls.tenants.pop(tenant, None)

    @classmethod
    def _forked(cls) -> None:
        """In a forked child: none of the parent's threads (nor a lock one of them held)."""
        cls.lock, cls.pool, cls.running, cls.tenants = threading.Lock(), None, 0, {}
        _Gateway.pool, _Gateway.size, _Gateway.running = None, 0, 0
        _Gateway.flights, _Gateway.tenants = {}, {}

    @classmethod
    def _remember_stalled(cls, host: str) -> None:
        with cls.lock:
            cls.stalled[host.lower()] = time.monotonic() + STALLED_NAME_SECONDS
            cls.stalled.move_to_end(host.lower())
            while len(cls.stalled) > STALLED_NAMES_KEPT:
                cls.stalled.popitem(last=False)


class _Flight:
    """One unfinished gateway lookup, shared by every connection to its name and port."""

    def __init__(self, future: concurrent.futures.Future[Infos], limit: float) -> None:
        self.future, self.limit, self.started = future, limit, time.monotonic()


class _Gateway:
    """The gateway's pool (``lookup_async``), under ``_Resolvers.lock``."""

    pool: concurrent.futures.ThreadPoolExecutor | None = None
    size = 0  # the pool's threads
    running = 0
    flights: dict[tuple[str, int], _Flight] = {}  # (name, port) -> its unfinished lookup
    tenants: dict[object, list[str]] = {}  # organization -> names of its unfinished lookups

    @classmethod
    def _join(
        cls, host: str, port: int, limit: float, tenant: object, threads: int, per_tenant: int
    ) -> _Flight:
        _Resolvers._refuse_stalled(host)
        key = (host.lower(), port)
        flight = cls.flights.get(key)
        if flight is not None:
            return flight  # takes no thread, counts against no organization
        mine = cls.tenants.get(tenant, []) if tenant is not None else []
        if len(mine) >= per_tenant:
            raise ResolverBusy(host, ", ".join(mine))
        if cls.running >= threads:
            raise ResolverBusy(host, None, threads=threads, what="gateway ")
        if cls.pool is None or cls.size < threads:
            if cls.pool is not None:
                cls.pool.shutdown(wait=False)  # its running lookups end on their own
            cls.pool, cls.size = (
                concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="resolve-gw"),
                threads,
            )
        cls.running += 1
        flight = _Flight(cls.pool.submit(cls._run, key, host, port, tenant), limit)
        cls.flights[key] = flight  # before ``_run`` can end: it takes the lock to forget it
        if tenant is not None:
            cls.tenants.setdefault(tenant, []).append(host)
        return flight

    @classmethod
    def _run(cls, key: tuple[str, int], host: str, port: int, tenant: object) -> Infos:
        return _resolve_then(host, port, lambda: cls._forget(key, host, tenant))

    @classmethod
    def _forget(cls, key: tuple[str, int], host: str, tenant: object) -> None:
        cls.running -= 1
        cls.flights.pop(key, None)
        hosts = cls.tenants.get(tenant, [])
        if host in hosts:
            hosts.remove(host)
        if not hosts:
            cls.tenants.pop(tenant, None)


def _resolve_then(host: str, port: int, forget: Callable[[], None]) -> Infos:
    """``resolve`` in a pool's thread, then, under the lock, ``forget`` the lookup (its thread
    given back) and, when the name answered, that it stalled."""
    answered = False
    try:
        infos = resolve(host, port)
        answered = True
        return infos
    finally:
        with _Resolvers.lock:
            forget()
            if answered:
                _Resolvers.stalled.pop(host.lower(), None)


os.register_at_fork(after_in_child=_Resolvers._forked)


def lookup(host: str, port: int, timeout: float, tenant: object = None) -> Infos:
    """``getaddrinfo(host, port)`` within ``timeout`` seconds (``TimeoutError``, the lookup
    abandoned), for ``tenant`` (an organization's id) when given; ``NameStalled`` or
    ``ResolverBusy`` at once when no lookup may start (see the module's rules)."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    with _Resolvers.lock:
        started = _Resolvers._start(host, port, tenant)
    try:
        return started.result(timeout)
    except TimeoutError:
        _Resolvers._remember_stalled(host)
        raise


async def lookup_async(
    host: str,
    port: int,
    timeout: float,
    tenant: object = None,
    *,
    threads: int = 32,
    per_tenant: int = 2,
) -> Infos:
    """``getaddrinfo`` for a coroutine, in the gateway's pool of ``threads`` (see the module's
    rules), awaited without blocking the event loop: ``TimeoutError`` once ``timeout`` seconds
    pass (the name stalled when its lookup ran that long), ``NameStalled`` or ``ResolverBusy``
    at once when no lookup may start or be joined."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    with _Resolvers.lock:
        flight = _Gateway._join(host, port, timeout, tenant, threads, per_tenant)
    try:
        # Shielded: a caller that stops waiting leaves the lookup to the thread (and to the
        # other connections sharing it).
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(flight.future)), timeout)
    except TimeoutError:
        # Only a lookup that ran its own full limit (1 ms of timer slack), whoever waited.
        if not flight.future.done() and time.monotonic() - flight.started >= flight.limit - 1e-3:
            _Resolvers._remember_stalled(host)
        raise
