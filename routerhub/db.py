"""Database connections of code that runs outside Django's request cycle (the gateway's threads).

Django drops a connection an error left unusable at the start and end of each HTTP request
(``close_old_connections`` on the request signals). The gateway sends no such signals: each
thread of its pool keeps one connection for its whole life, so after PostgreSQL restarts every
thread would keep failing on its dead connection until the process is restarted.
``DatabaseThreadPool`` runs that check before every call instead.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

_T = TypeVar("_T")


def db_connections_drop_broken() -> None:
    """Close this thread's connections that an error left unusable; the next query reconnects.

    Only connections that saw an error are tested (one ``SELECT 1``), so the hot path pays
    nothing while the database is healthy.
    """
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None and conn.errors_occurred and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _with_usable_connection(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    db_connections_drop_broken()
    return fn(*args, **kwargs)


class DatabaseThreadPool(ThreadPoolExecutor):
    """The event loop's default executor in the gateway (``sync_to_async(thread_sensitive=False)``
    runs there): every call first drops a connection a database outage left broken."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        return super().submit(_with_usable_connection, fn, *args, **kwargs)
