"""The retry sweep (every 15 s) queues an attempt once, not at every sweep while it waits in
the broker: with the webhook workers busy (a tenant's receivers that hold each attempt to its
bound), the old sweep queued the same up-to-500 due rows again every 15 s, ~2,000 duplicate
tasks a minute piling up in Redis ahead of every other organization's deliveries. A task that
is really lost (a broker restart) is queued again once the attempt's bound has passed.

Tasks go to the real broker (no worker listens on the test's queue); the queue is purged."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from routerhub.celery import app
from tests.factories import tenants_make
from webhooks.delivery import requeue_after, webhook_deliveries_retry_due
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_endpoint_create, webhook_event_emit

pytestmark = pytest.mark.django_db

SWEEP = 15.0  # routerhub/celery.py's beat period of webhooks.retry_due


@pytest.fixture
def broker() -> Iterator[None]:
    app.control.purge()
    yield
    app.control.purge()


def _delivery(capture: Any) -> WebhookDelivery:
    tenants = tenants_make()
    webhook_endpoint_create(
        organization=tenants.organization,
        url="http://127.0.0.1:9/hook",
        events=["router.promoted"],
    )
    with capture(execute=True):  # its first attempt is queued on the broker
        [delivery] = webhook_event_emit(tenants.organization.pk, "router.promoted", {"v": 1})
    return delivery


def _sweeps(start: Any, count: int) -> list[list[tuple[int, int]]]:
    return [
        webhook_deliveries_retry_due(now=start + timedelta(seconds=SWEEP * (i + 1)))
        for i in range(count)
    ]


def test_a_first_attempt_queued_is_not_queued_again_by_each_sweep(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    start = timezone.now()
    delivery = _delivery(django_capture_on_commit_callbacks)

    while_queued = _sweeps(start, 4)  # one minute of sweeps while no worker has taken it
    lost = webhook_deliveries_retry_due(now=start + timedelta(seconds=requeue_after() + 1))
    after = webhook_deliveries_retry_due(now=start + timedelta(seconds=requeue_after() + 16))

    assert while_queued == [[], [], [], []]  # the old sweep: [(id, 1)] four times
    assert lost == [(delivery.pk, 1)] and after == []
    assert requeue_after() == 4 * settings.WEBHOOK_TIMEOUT_SECONDS + 60


def test_a_retry_queued_by_the_sweep_is_queued_once(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    delivery = _delivery(django_capture_on_commit_callbacks)
    due = timezone.now() + timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, attempts=1, next_retry_at=due
    )

    queued = webhook_deliveries_retry_due(now=due)
    while_queued = _sweeps(due, 4)
    lost = webhook_deliveries_retry_due(now=due + timedelta(seconds=requeue_after() + 1))

    assert queued == [(delivery.pk, 2)]
    assert while_queued == [[], [], [], []]  # the old sweep: [(id, 2)] four times
    assert lost == [(delivery.pk, 2)]
