"""Database connections of code that runs outside Django's request cycle (the gateway's threads).

Django drops a connection an error left unusable at the start and end of each HTTP request
(``close_old_connections`` on the request signals). The gateway sends no such signals: each
thread of its pool keeps one connection for its whole life, so after PostgreSQL restarts every
thread would keep failing on its dead connection until the process is restarted.
``DatabaseThreadPool`` runs that check before every call instead.

Those threads keep connections of their own, outside the process's pool (settings
``DATABASE_POOL_MAX_SIZE``, which Django's requests borrow from): they are as many as the threads,
and a thread that waits for the pool while the database is down would answer late instead of fast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connections
from django.db.utils import load_backend

_T = TypeVar("_T")


class _Outages:
    # Bumped when a call fails on a connection error: every thread then tests its connection
    # before its next call, even one that was idle through the outage and saw no error itself
    # (otherwise it would fail a request whenever the pool next reaches it).
    generation = 0


_thread = threading.local()


def database_outage_seen() -> None:
    """Another connection of this process failed on a connection error (the gateway's own
    async pool, ``billing.pg_async``): every thread tests its connection before its next call."""
    _Outages.generation += 1


def db_connections_drop_broken(*, test_all: bool = False) -> None:
    """Close this thread's connections that are unusable; the next query reconnects.

    Only connections that saw an error (or all, after an outage elsewhere) are tested, with one
    ``SELECT 1``, so the hot path pays nothing while the database is healthy.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if conn.errors_occurred or test_all:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()


def _connections_of_this_thread() -> None:
    """Replace this thread's pooled connection wrappers with ones that connect directly (once)."""
    if getattr(_thread, "own_connections", False):
        return
    for alias in connections:
        settings_dict = connections.settings[alias]
        options = settings_dict.get("OPTIONS", {})
        if "pool" in options:
            connections[alias].close()  # one this thread borrowed before goes back to the pool
            direct = {**settings_dict, "OPTIONS": {k: v for k, v in options.items() if k != "pool"}}
            connections[alias] = load_backend(direct["ENGINE"]).DatabaseWrapper(direct, alias)
    _thread.own_connections = True


def _with_usable_connection(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    _connections_of_this_thread()
    generation = _Outages.generation
    db_connections_drop_broken(test_all=getattr(_thread, "generation", generation) != generation)
    _thread.generation = generation
    try:
        return fn(*args, **kwargs)
    except (OperationalError, InterfaceError):
        _Outages.generation += 1
        raise


class DatabaseThreadPool(ThreadPoolExecutor):
    """The event loop's default executor in the gateway (``sync_to_async(thread_sensitive=False)``
    runs there): every call first drops a connection a database outage left broken."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return super().submit(_with_usable_connection, fn, *args, **kwargs)
