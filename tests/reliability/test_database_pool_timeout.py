"""When no pooled database connection becomes free in time (psycopg_pool's ``PoolTimeout``, which
Django raises as ``OperationalError``), Django's pages and API answer a retryable 503 with
Retry-After, as the gateway does when the database is away; the old code answered a 500."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import psycopg_pool
import pytest
from django.db import connection
from django.db.backends.postgresql.base import DatabaseWrapper
from django.test import Client

from accounts.models import KeyScope
from tests.conftest import require_postgres
from tests.factories import key_client, key_make, organization_make, user_make


@pytest.fixture
def pool_exhausted() -> Iterator[None]:
    """Every new connection waits for the pool in vain (as ``DATABASE_POOL_TIMEOUT`` expiring)."""
    require_postgres()
    timeout = psycopg_pool.PoolTimeout("couldn't get a connection after 3.00 sec")
    connection.close()
    with mock.patch.object(DatabaseWrapper, "get_new_connection", side_effect=timeout):
        yield
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_an_api_request_gets_503_with_retry_after_when_the_pool_times_out(
    pool_exhausted: None,
) -> None:
    response = key_client("rh-mgmt-" + "x" * 43).get("/api/v1/credits")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["type"] == "service_unavailable"


@pytest.mark.django_db(transaction=True)
def test_a_dashboard_page_gets_503_with_retry_after_when_the_pool_times_out() -> None:
    require_postgres()
    user = user_make()
    key_make(organization_make(owner=user), scope=KeyScope.MANAGE)
    client = Client()
    client.force_login(user)
    timeout = psycopg_pool.PoolTimeout("couldn't get a connection after 3.00 sec")
    connection.close()
    with mock.patch.object(DatabaseWrapper, "get_new_connection", side_effect=timeout):
        response = client.get("/dashboard/")
    connection.close()
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
