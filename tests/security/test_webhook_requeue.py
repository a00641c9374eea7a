"""A queued webhook attempt is left to its task however long it waits in the broker: with the
webhook workers busy (4 workers, receivers that hold each attempt 30 s, 500 rows waiting), a
task can wait far longer than an attempt's bound, and queuing it again at that bound (the
branch's first fix: ~100 s after queuing) made ~300 duplicates a minute. Only a task the broker
lost outright is queued again, after its own redelivery window (``visibility_timeout``); a
task the broker refused is seen at once and its row is due again for the next sweep (15 s).

Tasks go to the real broker (no worker listens on the test's queue); the queue is purged. The
broker "made to raise" is the task's ``delay`` replaced: a down broker retries for seconds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.models import KeyScope
from routerhub.celery import app
from tests.factories import dashboard_client, key_client, key_make, tenants_make
from webhooks import tasks
from webhooks.delivery import webhook_deliveries_retry_due
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import (
    attempt_dead_after,
    queued_lost_after,
    webhook_endpoint_create,
    webhook_event_emit,
)

pytestmark = pytest.mark.django_db

SWEEP = 15.0  # routerhub/celery.py's beat period of webhooks.retry_due


@pytest.fixture
def broker() -> Iterator[None]:
    app.control.purge()
    yield
    app.control.purge()


def _emit(capture: Any, endpoints: int = 1) -> tuple[Any, list[WebhookDelivery]]:
    tenants = tenants_make()
    for n in range(endpoints):
        webhook_endpoint_create(
            created_by=None,
            organization=tenants.organization,
            url=f"http://127.0.0.1:9/hook{n}",
            events=["router.promoted"],
        )
    with capture(execute=True):  # the first attempts are queued on the broker
        deliveries = webhook_event_emit(tenants.organization.pk, "router.promoted", {"v": 1})
    return tenants, deliveries


def _sweeps(start: Any, seconds: list[float]) -> list[list[tuple[int, int]]]:
    return [webhook_deliveries_retry_due(now=start + timedelta(seconds=s)) for s in seconds]


def _refusing_after(monkeypatch: Any, sent: int) -> list[int]:
    """The broker takes ``sent`` tasks, then refuses every one."""
    taken: list[int] = []

    def delay(delivery_id: int, attempt: int) -> None:
        if len(taken) >= sent:
            raise OperationalError("Error 111 connecting to the broker. Connection refused.")
        taken.append(delivery_id)

    monkeypatch.setattr(tasks.webhook_deliver, "delay", delay)
    return taken


def test_a_first_attempt_waiting_in_the_broker_is_not_queued_again_before_its_window(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    start = timezone.now()
    _, [delivery] = _emit(django_capture_on_commit_callbacks)

    # Sweeps every 15 s for a minute, then past the old 100 s window for 50 minutes.
    waiting = _sweeps(start, [15, 30, 45, 60, attempt_dead_after() + 1, 600, 1800, 3000])
    lost = webhook_deliveries_retry_due(now=start + timedelta(seconds=queued_lost_after() + 1))
    after = webhook_deliveries_retry_due(now=start + timedelta(seconds=queued_lost_after() + 16))

    assert waiting == [[]] * 8  # the old code: [(id, 1)] at 101 s, 600 s, 1800 s, 3000 s
    assert lost == [(delivery.pk, 1)] and after == []
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert queued_lost_after() == visibility + attempt_dead_after() >= 3600


def test_a_retry_waiting_in_the_broker_is_queued_once(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    _, [delivery] = _emit(django_capture_on_commit_callbacks)
    due = timezone.now() + timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.PENDING, attempts=1, next_retry_at=due, queued_at=None
    )

    queued = webhook_deliveries_retry_due(now=due)
    waiting = _sweeps(due, [15, 30, attempt_dead_after() + 1, 1200, 3000])
    lost = webhook_deliveries_retry_due(now=due + timedelta(seconds=queued_lost_after() + 1))

    assert queued == [(delivery.pk, 2)]
    assert waiting == [[]] * 5  # the old code: [(id, 2)] again at 101 s, 1200 s, 3000 s
    assert lost == [(delivery.pk, 2)]


def test_a_first_attempt_the_broker_refused_is_queued_by_the_next_sweep(
    broker: None, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    start = timezone.now()
    taken = _refusing_after(monkeypatch, 1)
    _, deliveries = _emit(django_capture_on_commit_callbacks, endpoints=3)
    rows = {d.pk: d for d in WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries])}

    monkeypatch.undo()  # the broker is back
    next_sweep = webhook_deliveries_retry_due(now=start + timedelta(seconds=SWEEP))

    [sent] = taken
    unsent = sorted(set(rows) - {sent})
    assert sorted(next_sweep) == [(pk, 1) for pk in unsent]  # the old code: [] for ~100 s
    assert rows[sent].queued_at is not None
    assert all(rows[pk].queued_at is None for pk in unsent)
    assert all(rows[pk].next_retry_at <= start + timedelta(seconds=SWEEP) for pk in unsent)


def test_a_retry_the_broker_refused_is_queued_by_the_next_sweep(
    broker: None, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    _, deliveries = _emit(django_capture_on_commit_callbacks, endpoints=3)
    due = timezone.now() + timedelta(hours=1)
    ids = sorted(d.pk for d in deliveries)
    WebhookDelivery.objects.filter(pk__in=ids).update(
        status=DeliveryStatus.PENDING, attempts=1, next_retry_at=due, queued_at=None
    )
    taken = _refusing_after(monkeypatch, 1)

    refused = webhook_deliveries_retry_due(now=due)  # the old code raised here
    monkeypatch.undo()
    next_sweep = webhook_deliveries_retry_due(now=due + timedelta(seconds=SWEEP))

    assert refused == [(taken[0], 2)]
    assert sorted(next_sweep) == [(pk, 2) for pk in ids if pk != taken[0]]


def test_a_queued_attempt_shows_queued_not_a_retry_time(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    tenants, [delivery] = _emit(django_capture_on_commit_callbacks)
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    [shown] = admin.get(f"/api/v1/webhooks/{delivery.endpoint_id}/deliveries").json()["results"]
    page = dashboard_client(tenants.owner, tenants.organization).get("/dashboard/webhooks/")
    row = page.content.decode().split("router.promoted</code>")[1].split("</tr>")[0]

    assert (shown["status"], shown["next_retry_at"]) == ("pending", None)  # old: ~100 s ahead
    assert shown["queued_at"] is not None
    assert "<td>queued</td>" in row


def test_an_attempt_queued_longer_than_an_attempt_lasts_is_shown_possibly_lost(
    broker: None, django_capture_on_commit_callbacks: Any
) -> None:
    tenants, deliveries = _emit(django_capture_on_commit_callbacks, endpoints=3)
    waited, fresh, started = sorted(d.pk for d in deliveries)
    long_ago = timezone.now() - timedelta(seconds=attempt_dead_after() + 1)
    WebhookDelivery.objects.filter(pk__in=[waited, started]).update(queued_at=long_ago)
    WebhookDelivery.objects.filter(pk=started).update(status=DeliveryStatus.SENDING)
    admin = key_client(key_make(tenants.organization, scope=KeyScope.MANAGE))

    shown = {
        row["endpoint"]: row
        for endpoint in {d.endpoint_id for d in deliveries}
        for row in admin.get(f"/api/v1/webhooks/{endpoint}/deliveries").json()["results"]
    }
    page = dashboard_client(tenants.owner, tenants.organization).get("/dashboard/webhooks/")
    rows = [r.split("</tr>")[0] for r in page.content.decode().split("router.promoted</code>")]
    hinted = [row for row in rows[1:] if "the task lost" in row]

    hints = {d.pk: shown[d.endpoint_id]["possibly_lost"] for d in deliveries}
    assert hints == {waited: True, fresh: False, started: False}  # old code: no such field
    [waited_row] = [d for d in deliveries if d.pk == waited]
    assert len(hinted) == 1 and waited_row.endpoint.url in hinted[0]


def test_an_event_committed_late_is_queued_once_by_the_sweep_or_after_commit(
    broker: None, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    taken = _refusing_after(monkeypatch, 100)
    tenants = tenants_make()
    webhook_endpoint_create(
        created_by=None,
        organization=tenants.organization,
        url="http://127.0.0.1:9/hook",
        events=["router.drift"],
    )
    with django_capture_on_commit_callbacks() as callbacks:
        [delivery] = webhook_event_emit(tenants.organization.pk, "router.drift", {"v": 1})
    # The emitting transaction stayed open past the old window: the sweep sees the row first.
    late = timezone.now() + timedelta(seconds=attempt_dead_after() + 1)
    swept = webhook_deliveries_retry_due(now=late)
    for callback in callbacks:  # then the commit's own queuing runs
        callback()

    assert swept == [(delivery.pk, 1)]
    assert taken == [delivery.pk]  # the old code: queued by both, [id, id]
