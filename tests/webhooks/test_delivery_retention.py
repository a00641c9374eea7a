"""The delivery log is bounded: finished deliveries older than WEBHOOK_DELIVERY_RETENTION_DAYS
are deleted by an hourly task, oldest first and a bounded number per run; pending (and sending)
deliveries and recent ones stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routerhub.celery import app
from tests.factories import tenants_make
from webhooks import tasks
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import webhook_deliveries_prune, webhook_endpoint_create

pytestmark = pytest.mark.django_db


def _deliveries(statuses_and_ages: list[tuple[str, int]]) -> list[int]:
    """One delivery per (status, age in days), created in that order (oldest ids first)."""
    tenants = tenants_make()
    endpoint = webhook_endpoint_create(
        created_by=None,
        organization=tenants.organization,
        url="http://127.0.0.1:9/hook",
        events=["router.drift"],
    ).endpoint
    ids = []
    for n, (status, days) in enumerate(statuses_and_ages):
        row = WebhookDelivery.objects.create(
            organization=tenants.organization,
            endpoint=endpoint,
            event_id=f"evt_{n}",
            event_type="router.drift",
            payload={},
            status=status,
        )
        created = timezone.now() - timedelta(days=days)
        WebhookDelivery.objects.filter(pk=row.pk).update(created_at=created)
        ids.append(row.pk)
    return ids


def _left() -> list[int]:
    return sorted(WebhookDelivery.objects.values_list("pk", flat=True))


def test_old_finished_deliveries_are_deleted_and_pending_and_recent_ones_kept(
    settings: Any,
) -> None:
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    pending, sending, _old_succeeded, _old_failed, recent = _deliveries(
        [
            (DeliveryStatus.PENDING, 40),
            (DeliveryStatus.SENDING, 40),
            (DeliveryStatus.SUCCEEDED, 40),
            (DeliveryStatus.FAILED, 31),
            (DeliveryStatus.SUCCEEDED, 29),
        ]
    )

    deleted = tasks.webhook_deliveries_prune()

    assert deleted == 2
    assert _left() == [pending, sending, recent]
    scheduled = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert scheduled["webhooks.deliveries_prune"] == 3600.0


def test_a_run_deletes_at_most_its_batches_oldest_first(settings: Any) -> None:
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    ids = _deliveries([(DeliveryStatus.SUCCEEDED, 45 - n) for n in range(5)])

    first = webhook_deliveries_prune(batch=2, batches=1)
    kept_after_first = _left()
    second = webhook_deliveries_prune(batch=2, batches=2)

    assert (first, kept_after_first) == (2, ids[2:])
    assert (second, _left()) == (3, [])


def test_nothing_is_deleted_within_the_retention(settings: Any) -> None:
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    ids = _deliveries([(DeliveryStatus.FAILED, 29), (DeliveryStatus.SUCCEEDED, 1)])

    assert webhook_deliveries_prune() == 0
    assert _left() == ids


def test_a_short_last_batch_reads_by_id_from_the_last_row_seen(settings: Any) -> None:
    """Fewer than ``batch`` old rows left: each read of the table starts after an id (the pk
    index, never a scan and sort of every remaining row), and the run ends at the first recent
    row; failed on the old code: its reads filtered on status and age with no id bound."""
    settings.WEBHOOK_DELIVERY_RETENTION_DAYS = 30
    statuses = [DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED]
    ids = _deliveries([(status, 40) for status in statuses] + [(DeliveryStatus.FAILED, 1)] * 5)

    with CaptureQueriesContext(connection) as queries:
        deleted = webhook_deliveries_prune(batch=2, batches=10)

    assert (deleted, _left()) == (2, [ids[0], *ids[3:]])
    table = [q["sql"] for q in queries.captured_queries if "webhooks_webhookdelivery" in q["sql"]]
    reads = [sql for sql in table if sql.startswith("SELECT")]
    assert len(reads) == 2 and len(table) <= 4
    assert all('"webhooks_webhookdelivery"."id" >' in sql and "LIMIT 2" in sql for sql in reads)
    assert all("created_at" not in sql.split("WHERE")[1] for sql in reads)
