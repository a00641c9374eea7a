"""A gateway thread never keeps a transaction open between its calls (``routerhub.db``).

Seen in CI: ``connect()`` on a ``DatabaseThreadPool`` thread failed after opening the socket but
before turning autocommit on (pytest-django blocked database access mid-connect). Django kept that
connection, so every later query on the thread ran in one implicit transaction that was never
committed: a connection "idle in transaction" for minutes, holding the locks the usage flush
waited on. Each thread now closes such a connection after (and before) every call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

from accounts.models import Organization
from routerhub.db import DatabaseThreadPool, _outside_autocommit, _vendors_told
from tests.factories import organization_make


@pytest.fixture
def pool() -> Iterator[DatabaseThreadPool]:
    pool = DatabaseThreadPool(max_workers=1)
    yield pool
    pool.submit(connections.close_all).result()
    pool.shutdown()


def connect_failing_at_autocommit(pool: DatabaseThreadPool) -> None:
    real = BaseDatabaseWrapper.set_autocommit
    main = threading.current_thread()

    def blocked(self: BaseDatabaseWrapper, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread() is not main:
            raise RuntimeError("Database access not allowed")  # what pytest-django raised
        real(self, *args, **kwargs)

    BaseDatabaseWrapper.set_autocommit = blocked  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            pool.submit(lambda: connection.ensure_connection()).result()
    finally:
        BaseDatabaseWrapper.set_autocommit = real  # type: ignore[method-assign]


def backend_state(pid: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.django_db(transaction=True)
def test_a_connect_that_failed_before_autocommit_leaves_no_transaction_open(
    pool: DatabaseThreadPool,
) -> None:
    organization = organization_make(name="before")
    connect_failing_at_autocommit(pool)

    def rename() -> int:
        Organization.objects.filter(pk=organization.pk).update(name="after")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    pid = pool.submit(rename).result()
    # Old code: the thread's connection had autocommit off, so the update sat in an open
    # transaction: invisible to everyone else, its row lock held for the thread's life.
    assert Organization.objects.get(pk=organization.pk).name == "after"
    assert backend_state(pid) == "idle"


@pytest.mark.django_db(transaction=True)
def test_a_call_that_leaves_a_transaction_open_is_rolled_back_not_kept(
    pool: DatabaseThreadPool,
) -> None:
    organization = organization_make(name="kept")

    def forget_to_commit() -> None:
        connection.set_autocommit(False)
        Organization.objects.filter(pk=organization.pk).update(name="half")

    pool.submit(forget_to_commit).result()
    assert Organization.objects.get(pk=organization.pk).name == "kept"
    # The thread reconnected in autocommit: its next write commits.
    pool.submit(Organization.objects.filter(pk=organization.pk).update, name="done").result()
    assert Organization.objects.get(pk=organization.pk).name == "done"


@pytest.mark.django_db  # Django's connect() asks pytest-django's gate, whichever the database
def test_sqlite_connections_outside_autocommit_are_recognised() -> None:
    settings = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )["default"]
    sqlite = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, "x")
    sqlite.connect()
    try:
        assert not _outside_autocommit(sqlite)
        sqlite.connection.isolation_level = ""  # what a connect() stopped mid-way leaves
        assert _outside_autocommit(sqlite)
        sqlite.connection.isolation_level = None
        sqlite.connection.execute("CREATE TABLE t (a)")
        sqlite.connection.execute("BEGIN")
        sqlite.connection.execute("INSERT INTO t VALUES (1)")
        assert _outside_autocommit(sqlite)
    finally:
        sqlite.close()


class _Driver:
    """A driver connection of a backend ``routerhub.db`` has no special case for."""

    def __init__(self, autocommit: bool | None) -> None:
        if autocommit is not None:
            self.autocommit = autocommit


class _MySQLdbLike:
    def __init__(self, autocommit: bool) -> None:
        self._on = autocommit

    def autocommit(self, on: bool) -> None:  # MySQLdb's setter, a method
        self._on = on

    def get_autocommit(self) -> bool:
        return self._on


@pytest.mark.parametrize(
    ("driver", "django_record", "outside"),
    [
        (_Driver(autocommit=True), True, False),
        (_Driver(autocommit=False), True, True),  # old code: False, "fine"
        (_MySQLdbLike(autocommit=False), True, True),  # old code: False
        (_MySQLdbLike(autocommit=True), True, False),
        (_Driver(autocommit=None), False, True),  # no driver state: Django's record; old: False
        (_Driver(autocommit=None), True, False),
    ],
)
def test_another_vendors_connection_outside_autocommit_is_recognised(
    driver: object, django_record: bool, outside: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend other than PostgreSQL or SQLite (a fake connection wrapper here) is checked by
    its driver's autocommit, else Django's record of it; before, any other vendor was "fine"."""
    conn = SimpleNamespace(
        vendor="fakevendor",
        connection=driver,
        settings_dict={"AUTOCOMMIT": True},
        autocommit=django_record,
    )
    _vendors_told.discard("fakevendor")
    assert _outside_autocommit(conn) is outside  # type: ignore[arg-type]
    assert _outside_autocommit(conn) is outside  # type: ignore[arg-type]
    told = [r for r in caplog.records if "fakevendor" in r.getMessage()]
    assert len(told) == 1  # once a vendor
