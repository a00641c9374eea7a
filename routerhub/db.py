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

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend
from psycopg.pq import TransactionStatus

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


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
    ``SELECT 1``, so the hot path pays nothing while the database is healthy. A connection left
    outside autocommit since the last call is closed too (``connections_drop_half_open``).
    """
    connections_drop_half_open()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if conn.errors_occurred or test_all:
            if conn.is_usable():
                conn.errors_occurred = False
            else:
                conn.close()


def connections_drop_half_open() -> None:
    """Close this thread's connections that sit in a transaction nobody will finish.

    Between two calls no atomic block is open, so the driver must be idle and in autocommit. It is
    not when ``connect()`` failed after opening the socket but before turning autocommit on (an
    error in ``set_autocommit`` or ``init_connection_state``): Django keeps that connection, and
    every later query on this thread would run in one implicit transaction that is never committed,
    holding its locks for the thread's life (seen as a connection "idle in transaction" that blocked
    the usage flush). Closing rolls such a transaction back; the next query reconnects properly.
    Reads driver state only: no query.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and not conn.in_atomic_block and _outside_autocommit(conn):
            conn.close()


def _outside_autocommit(conn: BaseDatabaseWrapper) -> bool:
    raw = conn.connection
    autocommit = conn.settings_dict["AUTOCOMMIT"]
    if conn.vendor == "postgresql":
        idle = raw.info.transaction_status == TransactionStatus.IDLE
        return not idle or raw.autocommit != autocommit
    if conn.vendor == "sqlite":  # autocommit is isolation_level None (Django's sqlite backend)
        return bool(raw.in_transaction) or (raw.isolation_level is None) != autocommit
    return _outside_autocommit_generic(conn, autocommit)


_vendors_told: set[str] = set()


def _outside_autocommit_generic(conn: BaseDatabaseWrapper, autocommit: bool) -> bool:
    """Another backend (not PostgreSQL or SQLite): its driver's autocommit when the driver shows
    it (a ``get_autocommit()``, as MySQLdb's, or an ``autocommit`` attribute, as most DB-API
    drivers'), and Django's record of it (``conn.autocommit``, set only once the driver took
    it). A transaction open in autocommit is not visible generically: said once a vendor."""
    if conn.vendor not in _vendors_told:
        _vendors_told.add(conn.vendor)
        logger.warning(
            "database vendor %r: between the gateway's calls only its autocommit is checked, "
            "not an open transaction (routerhub.db reads PostgreSQL's and SQLite's)",
            conn.vendor,
        )
    getter = getattr(conn.connection, "get_autocommit", None)
    driver = getter() if callable(getter) else getattr(conn.connection, "autocommit", None)
    if driver is None or callable(driver):  # not shown (or a setter method): Django's record
        driver = conn.autocommit
    return bool(driver) != autocommit or bool(conn.autocommit) != autocommit


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
    finally:
        connections_drop_half_open()


class DatabaseThreadPool(ThreadPoolExecutor):
    """The event loop's default executor in the gateway (``sync_to_async(thread_sensitive=False)``
    runs there): every call first drops a connection a database outage left broken."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return super().submit(_with_usable_connection, fn, *args, **kwargs)
