"""The gateway's own PostgreSQL connections: a database restart costs one failed statement, not a
failure per connection that died with it, and waiting requests that leave never leak a slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from billing import pg_async
from tests.conftest import require_postgres
from tests.db_locks import gateway_sessions_terminate


@pytest.fixture
def pool(transactional_db: None, settings: Any) -> Iterator[None]:
    require_postgres()
    settings.GATEWAY_DB_CONNECTIONS = 2
    settings.GATEWAY_DB_TIMEOUT = 5.0
    yield
    pg_async.pg_close()


def test_after_a_restart_one_statement_fails_and_every_old_connection_is_retired(
    pool: None,
) -> None:
    async def run() -> list[str]:
        # Two connections in the pool, both idle.
        await asyncio.gather(*(pg_async.pg_fetchone("SELECT pg_sleep(0.1)", {}) for _ in range(2)))
        assert pg_async._State.pool is not None and len(pg_async._State.pool.idle) == 2
        await asyncio.to_thread(gateway_sessions_terminate)  # the database restarts
        outcomes = []
        for _ in range(3):
            try:
                row = await pg_async.pg_fetchone("SELECT 1", {})
                outcomes.append(f"ok {row}")
            except psycopg.OperationalError:
                outcomes.append("failed")
        return outcomes

    assert asyncio.run(run()) == ["failed", "ok (1,)", "ok (1,)"]


def test_waiting_requests_that_leave_do_not_leak_connections(pool: None) -> None:
    async def run() -> tuple[int, tuple[Any, ...] | None]:
        busy = [asyncio.ensure_future(pg_async.pg_fetchone("SELECT pg_sleep(0.3)", {}))
                for _ in range(2)]  # fmt: skip
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(pg_async.pg_fetchone("SELECT 1", {})) for _ in range(6)]
        await asyncio.sleep(0.05)
        for task in waiting:
            task.cancel()  # their clients went away
        await asyncio.gather(*busy)
        await asyncio.gather(*waiting, return_exceptions=True)
        row = await asyncio.wait_for(pg_async.pg_fetchone("SELECT 1", {}), timeout=2)
        assert pg_async._State.pool is not None
        return pg_async._State.pool.size, row

    size, row = asyncio.run(run())
    assert row == (1,) and size <= 2
