"""The gateway's own asynchronous PostgreSQL connections, for the one statement on its hot path.

Every gateway request reserves credits before it is forwarded. Through Django that statement
costs a hop to a worker thread (``sync_to_async``) and Django's cursor wrappers on top of the
round trip; here it runs on the event loop over a few psycopg connections per worker, as a
server-side prepared statement. Measured with ``python -m bench.profile_gateway``: the thread
hop and wrappers were about a sixth of a worker's CPU per request.

A connection the database dropped (a restart) fails its statement with ``OperationalError``;
it is discarded and the next request reconnects. Callers map that error to a 503.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus

from routerhub.db import database_outage_seen

# libpq parameters a DATABASES["default"]["OPTIONS"] may carry that matter to a raw connection.
_CONNINFO_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "options")


# Holds commit without waiting for the disk flush (measured: ~20% more requests per second on
# this machine). A hold is not money: the ledger and balances only change in settlement, whose
# commits are durable before drafts are acknowledged. A database crash can forget holds of the
# last few hundred milliseconds; their requests are still charged at settlement, capped at the
# balance, so a balance never goes below zero and the ledger always matches it.
_OPTIONS = "-c synchronous_commit=off"


class _Pool:
    """Up to ``GATEWAY_DB_CONNECTIONS`` autocommit connections of one event loop, reused LIFO.

    After a connection error (an outage), every connection opened before it is retired instead
    of reused: one that was idle, or busy with a statement that completed just before the
    crash, would otherwise fail a request long after the database is back.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[AsyncConnection[Any]] = []
        self.size = 0
        self.waiters: deque[asyncio.Future[AsyncConnection[Any] | None]] = deque()
        self.outages = 0
        self.opened_after: dict[int, int] = {}  # id(connection) -> outages when it was opened

    async def acquire(self) -> AsyncConnection[Any]:
        while True:
            while self.idle:
                connection = self.idle.pop()
                if self._current(connection):
                    return connection
                self._retire(connection)
            if self.size < settings.GATEWAY_DB_CONNECTIONS:
                self.size += 1
                try:
                    async with asyncio.timeout(settings.GATEWAY_DB_TIMEOUT):
                        connection = await AsyncConnection.connect(
                            **_conninfo(), autocommit=True, prepare_threshold=0, options=_OPTIONS
                        )
                except BaseException:
                    self._free_slot()
                    raise
                self.opened_after[id(connection)] = self.outages
                return connection
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout(settings.GATEWAY_DB_TIMEOUT):
                    handed = await waiter
            except BaseException as exc:
                # Cancelled (the client left) or timed out just after a connection was handed
                # over: give it back, or its slot would be lost for good.
                if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                    self.release(waiter.result())
                if isinstance(exc, TimeoutError):
                    raise psycopg.OperationalError("no database connection became free") from None
                raise
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
            if handed is not None:
                return handed

    def release(self, connection: AsyncConnection[Any]) -> None:
        healthy = (
            not connection.closed and connection.info.transaction_status == TransactionStatus.IDLE
        )
        if not healthy or not self._current(connection):
            self._retire(connection)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def outage(self) -> None:
        """A statement failed on a connection error: retire every connection opened before."""
        self.outages += 1
        for connection in self.idle:
            self._retire(connection)
        self.idle = []

    def close(self) -> None:
        """Close the idle connections now (also from outside the loop, which may be gone)."""
        for connection in self.idle:
            connection.pgconn.finish()
        self.size -= len(self.idle)
        self.idle.clear()

    def _current(self, connection: AsyncConnection[Any]) -> bool:
        return self.opened_after.get(id(connection), -1) >= self.outages

    def _retire(self, connection: AsyncConnection[Any]) -> None:
        self.opened_after.pop(id(connection), None)
        connection.pgconn.finish()
        self._free_slot()

    def _free_slot(self) -> None:
        self.size -= 1
        while self.waiters:  # a waiter may now open a connection of its own
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _State:
    pool: _Pool | None = None


def _conninfo() -> dict[str, Any]:
    database = connections["default"].settings_dict  # the test database under pytest
    params: dict[str, Any] = {
        "dbname": database["NAME"],
        "user": database.get("USER") or None,
        "password": database.get("PASSWORD") or None,
        "host": database.get("HOST") or None,
        "port": database.get("PORT") or None,
        "application_name": "routerhub-gateway",
    }
    options = database.get("OPTIONS") or {}
    params.update({name: options[name] for name in _CONNINFO_OPTIONS if name in options})
    return {name: value for name, value in params.items() if value is not None}


def pool() -> _Pool:
    """This event loop's pool (a new loop, in tests or a restarted server, gets a new one)."""
    loop = asyncio.get_running_loop()
    pool = _State.pool
    if pool is None or pool.loop is not loop:
        if pool is not None:
            pool.close()  # a previous event loop's (tests, a restarted server)
        pool = _State.pool = _Pool(loop)
    return pool


async def pg_fetchone(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement in autocommit and return its first row."""
    current = pool()
    connection = await current.acquire()
    try:
        cursor = await connection.execute(sql, params)
        return await cursor.fetchone()
    except psycopg.OperationalError:
        outage_seen(current)
        raise
    finally:
        current.release(connection)


def outage_seen(current: _Pool) -> None:
    """A statement failed on a connection error: the server went away (a restart), and the
    other connections died with this one, the worker threads' Django connections included
    (they may see no error of their own)."""
    current.outage()
    database_outage_seen()


def pg_close() -> None:
    if _State.pool is not None:
        _State.pool.close()
        _State.pool = None
