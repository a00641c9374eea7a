"""Settlement commits without waiting for the disk and then waits for its WAL to be flushed
before anyone learns the batch is settled. PostgreSQL's WAL writer flushes only up to the last
asynchronous commit: WAL another session wrote after it, on a page not yet full, waits for the
next commit anywhere. On a quiet database the wait must not hang there (a CI run lost 10 s per
settlement and failed a test's teardown)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from billing.outbox import STREAM, _acknowledge_durable
from billing.wal import wal_position, wal_wait_durable
from routerhub.redis_clients import redis_client
from tests.conftest import require_postgres
from tests.factories import organization_make


@pytest.fixture
def unflushed_wal_of_another_session() -> Iterator[None]:
    """Another session's uncommitted write: WAL inserted that no commit will flush."""
    require_postgres()
    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or None, port=settings["PORT"] or None,
        user=settings["USER"], password=settings["PASSWORD"] or None, dbname=settings["NAME"],
    )  # fmt: skip
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
            organization_make()  # our asynchronous commit
        other.execute("CREATE TABLE wal_probe_uncommitted (id integer)")  # stays uncommitted
        yield
    finally:
        other.rollback()
        other.close()


@pytest.mark.django_db(transaction=True)
def test_the_durability_wait_forces_the_flush_of_wal_the_wal_writer_leaves_behind(
    unflushed_wal_of_another_session: None,
) -> None:
    written = wal_position()
    wal_wait_durable(timeout=30.0)  # raised TimeoutError before: the flush never came

    flushed = wal_position(flushed=True)
    assert written is not None and flushed is not None and flushed >= written


@pytest.mark.django_db(transaction=True)
def test_the_settler_acknowledges_a_batch_whose_flush_the_wal_writer_leaves_behind(
    unflushed_wal_of_another_session: None, settings: Any
) -> None:
    client: Any = redis_client(settings.REDIS_URL)
    entry_id = client.xadd(STREAM, {"probe": "1"})
    try:
        waiting = [(wal_position(), [entry_id], time.monotonic() - 1.0)]

        assert _acknowledge_durable(client, waiting) == []
        assert client.xrange(STREAM, entry_id, entry_id) == []  # acknowledged and deleted
    finally:
        client.xdel(STREAM, entry_id)
        client.close()
