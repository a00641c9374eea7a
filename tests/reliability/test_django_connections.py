"""PostgreSQL connections of the production server stay within a bound that does not grow with the
number of requests: Django's requests (each run in a thread of its own under ASGI) borrow from one
pool per process and give the connection back when they end (routerhub/settings.py, README
"Database connections").

On the old settings (persistent per-thread connections, ``CONN_MAX_AGE=60``) every request left
its connection open until a garbage collection, so the count grew with the requests.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from accounts.models import KeyScope
from tests.factories import key_make, organization_make
from tests.processes import database_url
from tests.reliability.live_gateway import WORKERS, LiveGateway

APP_NAME = "rh-connection-bound-test"  # marks the servers' connections in pg_stat_activity
POOL_SIZE = 3
# Each worker's pool, and the usage settler's (a process of its own, with the same settings).
BOUND = (WORKERS + 1) * POOL_SIZE


def server_connections() -> int:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
        ).fetchone()
    assert row is not None
    return int(row[0])


def no_catalog(fake_url: str) -> None:
    """These requests never reach the gateway's catalog."""


def fire(gateway: LiveGateway, client: httpx.Client, key: str, count: int, parallel: int) -> None:
    def one(i: int) -> None:
        if i % 2:
            response = client.get(f"{gateway.url}/readyz")
            assert response.status_code == 200, response.text[:300]
        else:
            response = client.get(
                f"{gateway.url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 200, response.text[:300]
            assert "balance" in response.json()

    if parallel == 1:
        for i in range(count):
            one(i)
        return
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))


@pytest.mark.django_db(transaction=True)
def test_django_requests_hold_a_bounded_number_of_connections(
    start_live_gateway: Callable[..., LiveGateway],
) -> None:
    key = key_make(organization_make(), scope=KeyScope.MANAGE)
    gateway = start_live_gateway(
        no_catalog,
        DATABASE_URL=f"{database_url()}?application_name={APP_NAME}",
        DATABASE_POOL_MAX_SIZE=str(POOL_SIZE),
    )
    seen = []
    with httpx.Client(timeout=30) as client:
        # A new connection per request on the old code: twice the requests, twice the count.
        for count, parallel in [(12, 1), (24, 1), (24, 8), (48, 8)]:
            fire(gateway, client, key, count, parallel)
            seen.append(server_connections())

    assert max(seen) <= BOUND, f"connections after each round: {seen} (bound {BOUND})"
    assert min(seen) > 0, "the servers' connections were not found by their application_name"
