"""A run start locks its organization's row ``FOR NO KEY UPDATE``: while it holds the lock, rows
referencing the organization (here an API key) are still inserted — their foreign key check takes
``FOR KEY SHARE``, which a plain ``FOR UPDATE`` would block (every usage record, key and ledger
entry of the organization waiting, and a deadlock with other row locks taken in the other order).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from tests.factories import key_make, organization_make
from training import services
from training.models import Dataset, DatasetStatus, Router

pytestmark = pytest.mark.django_db(transaction=True)


def test_keys_are_created_while_a_run_start_holds_the_organization_lock(monkeypatch: Any) -> None:
    organization = organization_make()
    router = Router.objects.create(organization=organization, slug="r", candidates=["a", "b"])
    dataset = Dataset.objects.create(
        organization=organization, name="d", status=DatasetStatus.READY
    )
    locked, release = threading.Event(), threading.Event()
    check = services._active_runs_check

    def check_and_hold(router: Router) -> None:
        check(router)
        locked.set()  # the organization's row is locked by now, until this transaction ends
        release.wait(timeout=10)

    monkeypatch.setattr(services, "_active_runs_check", check_and_hold)
    outcome: list[Any] = []

    def start() -> None:
        try:
            outcome.append(services.training_run_record(
                router=router, dataset=dataset, candidates=[], options={}))  # fmt: skip
        finally:
            connection.close()

    thread = threading.Thread(target=start)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # blocked → LockNotAvailable, not a hang
        key_make(organization)
    finally:
        release.set()
        thread.join(timeout=30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert len(outcome) == 1 and outcome[0].router_id == router.pk
