"""A delivery finished by a worker while the sweep is queuing it stays finished: the sweep holds
the rows it read ``pending`` (``SELECT … FOR UPDATE``) until it has marked them queued, so the
worker's claim waits for the sweep's commit, then claims and finishes the attempt, and the
sweep's mark never lands on a finished row.

The interleaving is forced with two real connections: the sweep stops right after its locking
read of the due rows (the statement with ``FOR UPDATE``; an event), the worker starts then, and the test waits until the worker is blocked
by the sweep's backend (or has already finished, which only happens without the lock) before
letting the sweep go on. Without the lock (and without the status check the marking UPDATE once
carried besides it) the sweep's mark lands on the succeeded row: ``queued_at`` set, shown as
queued (verified by removing ``select_for_update`` while the pause still matched any read;
now such a removal fails sooner: the sweep never reaches a locking read to pause at)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from tests.db_locks import backend_pid, waiting_for
from tests.factories import tenants_make
from tests.routing.servers import poll
from tests.threads import JOIN_TIMEOUT_S
from tests.webhooks.receiver import Receiver
from webhooks import tasks
from webhooks.delivery import webhook_deliveries_retry_due, webhook_delivery_attempt
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_endpoint_create


def _in_thread(call: Callable[[], Any], done: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            call()
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_delivery_finished_while_the_sweep_holds_it_stays_finished(
    monkeypatch: Any, receiver_factory: Callable[[list[int]], Receiver]
) -> None:
    receiver = receiver_factory([200])
    tenants = tenants_make()
    endpoint = webhook_endpoint_create(
        created_by=None,
        organization=tenants.organization,
        url=receiver.url,
        events=["router.promoted"],
    ).endpoint
    delivery = WebhookDelivery.objects.create(
        organization=tenants.organization,
        endpoint=endpoint,
        event_id="evt_race",
        event_type="router.promoted",
        payload={"id": "evt_race"},
    )
    queued: list[tuple[int, int]] = []
    monkeypatch.setattr(tasks.webhook_deliver, "delay", lambda *task: queued.append(task))
    locked, go, sweep_done, worker_done = (threading.Event() for _ in range(4))
    sweep_pid: list[int] = []
    outcome: list[str | None] = []

    def pause_at_the_lock(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if "FOR UPDATE" in sql and "webhooks_webhookdelivery" in sql and not locked.is_set():
            locked.set()
            go.wait(timeout=JOIN_TIMEOUT_S)
        return result

    def sweep() -> None:
        sweep_pid.append(backend_pid())
        with connection.execute_wrapper(pause_at_the_lock):
            webhook_deliveries_retry_due(now=timezone.now())

    def worker() -> None:  # the first attempt's task, taken from an earlier queuing
        outcome.append(webhook_delivery_attempt(delivery_id=delivery.pk, attempt=1))

    threads = [_in_thread(sweep, sweep_done)]
    assert locked.wait(timeout=JOIN_TIMEOUT_S)
    threads.append(_in_thread(worker, worker_done))
    poll(lambda: worker_done.is_set() or waiting_for(sweep_pid[0]))
    go.set()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)

    row = WebhookDelivery.objects.get(pk=delivery.pk)
    assert outcome == [DeliveryStatus.SUCCEEDED] and len(receiver.received) == 1
    assert (row.status, row.attempts) == (DeliveryStatus.SUCCEEDED, 1)
    assert (row.queued_at, row.next_retry_at) == (None, None)  # without the lock: marked queued
    assert queued == [(delivery.pk, 1)]  # the sweep's task then finds the attempt made
    assert webhook_delivery_attempt(delivery_id=delivery.pk, attempt=1) is None
