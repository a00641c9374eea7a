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

``lookup_async`` (the gateway, on its event loop) differs in one rule: a connection finding its
organization's lookup unfinished waits for that lookup (without a thread) and then starts its own,
within its timeout, instead of failing at once, so a burst of one tenant's new connections is
looked up one after the other rather than refused.

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
from typing import Any

RESOLVER_THREADS = 4  # name lookups running at once per process
STALLED_NAME_SECONDS = 60.0  # how long a name whose lookup timed out fails at once
STALLED_NAMES_KEPT = 1024  # stalled names remembered per process (least recent forgotten)
BUSY_RETRY_AFTER = 10  # seconds a caller refused for want of a thread is told to wait

Infos = list[tuple[Any, ...]]


class NameStalled(TimeoutError):
    """The name's lookup timed out moments ago; it was not tried again."""


class ResolverBusy(Exception):
    """No lookup was started: ``tenant_host`` names the organization's own unfinished lookup
    (``pending``), or is ``None`` when every thread of the process is busy."""

    def __init__(
        self,
        host: str,
        tenant_host: str | None,
        pending: concurrent.futures.Future[Infos] | None = None,
    ) -> None:
        self.host, self.tenant_host, self.pending = host, tenant_host, pending
        if tenant_host is None:
            why = f"every one of the {RESOLVER_THREADS} name resolver threads is busy"
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
    """The process's pool and what it is doing; everything below is changed under ``lock``."""

    lock = threading.Lock()
    pool: concurrent.futures.ThreadPoolExecutor | None = None
    running = 0  # lookups started and not finished (each holds a thread)
    # organization -> the name its unfinished lookup resolves, and that lookup
    tenants: dict[object, tuple[str, concurrent.futures.Future[Infos]]] = {}
    stalled: collections.OrderedDict[str, float] = collections.OrderedDict()  # name -> until

    @classmethod
    def _start(cls, host: str, port: int, tenant: object) -> concurrent.futures.Future[Infos]:
        if cls.pool is None:
            cls.pool = concurrent.futures.ThreadPoolExecutor(
                RESOLVER_THREADS, thread_name_prefix="resolve"
            )
        until = cls.stalled.get(host.lower())
        if until is not None and until > time.monotonic():
            raise NameStalled(f"{host} did not resolve in time moments ago")
        if tenant is not None and tenant in cls.tenants:
            raise ResolverBusy(host, *cls.tenants[tenant])
        if cls.running >= RESOLVER_THREADS:
            raise ResolverBusy(host, None)
        cls.running += 1
        started = cls.pool.submit(cls._run, host, port, tenant)
        if tenant is not None:  # before ``_run`` can end: it takes ``lock`` to forget it
            cls.tenants[tenant] = (host, started)
        return started

    @classmethod
    def _run(cls, host: str, port: int, tenant: object) -> Infos:
        try:
            return resolve(host, port)
        finally:
            with cls.lock:
                cls.running -= 1
                if tenant is not None:
                    cls.tenants.pop(tenant, None)

    @classmethod
    def _forked(cls) -> None:
        """In a forked child: none of the parent's threads (nor a lock one of them held)."""
        cls.lock, cls.pool, cls.running, cls.tenants = threading.Lock(), None, 0, {}

    @classmethod
    def _remember_stalled(cls, host: str) -> None:
        with cls.lock:
            cls.stalled[host.lower()] = time.monotonic() + STALLED_NAME_SECONDS
            cls.stalled.move_to_end(host.lower())
            while len(cls.stalled) > STALLED_NAMES_KEPT:
                cls.stalled.popitem(last=False)


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


async def lookup_async(host: str, port: int, timeout: float, tenant: object = None) -> Infos:
    """``lookup`` for a coroutine: the same pool and rules, awaited without blocking the event
    loop; a lookup of ``tenant``'s own still unfinished is waited for (see the module's rules).
    ``TimeoutError`` once ``timeout`` seconds pass, the lookup abandoned and its name stalled."""
    numeric = _numeric(host, port)
    if numeric is not None:
        return numeric
    started: concurrent.futures.Future[Infos] | None = None
    try:
        async with asyncio.timeout(timeout):
            while started is None:
                try:
                    with _Resolvers.lock:
                        started = _Resolvers._start(host, port, tenant)
                except ResolverBusy as busy:
                    if busy.pending is None:
                        raise
                    # Not cancelled with this wait: the organization's lookup runs on.
                    await asyncio.wait([asyncio.wrap_future(busy.pending)])
            # Shielded: a caller that stops waiting leaves the thread to end the lookup (and
            # give its place back); cancelling it before it ran would leave ``running`` counted.
            return await asyncio.shield(asyncio.wrap_future(started))
    except TimeoutError:
        if started is not None:
            _Resolvers._remember_stalled(host)  # only a name that was tried, never another's
        raise
