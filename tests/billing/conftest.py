"""Fixtures of the outbox tests: the session's usage stream, emptied, and a funded organization."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from billing.outbox import GROUP, STREAM
from billing.outbox_entries import DEAD_STREAM
from billing.services import ledger_post
from tests.conftest import require_redis
from tests.factories import organization_make


@pytest.fixture
def redis_client(settings: Any) -> Iterator[Any]:
    """A client of the test Redis, its usage stream and dead letters empty, the group there."""
    require_redis()
    import redis

    from routerhub.redis_clients import redis_client as timed_client

    client = timed_client(settings.REDIS_URL)
    client.delete(STREAM, DEAD_STREAM)
    with contextlib.suppress(redis.ResponseError):
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    yield client
    client.delete(STREAM, DEAD_STREAM)
    client.close()


@pytest.fixture
def funded(transactional_db: None) -> Any:
    """An organization with 10 USD of credits."""
    organization = organization_make()
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("10"), idempotency_key="g"
    )
    return organization
