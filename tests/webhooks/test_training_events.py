"""A training run that ends announces itself: ``training.finished`` with the new version, or
``training.failed`` with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import organization_make
from tests.training.conftest import csv_bytes, synthetic_frame
from training import execution, services
from training.serving import dataset_from_file, router_train_now
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


def test_training_runs_emit_finished_and_failed(django_capture_on_commit_callbacks: Any) -> None:
    organization = organization_make(name="Hooks Co")
    webhook_endpoint_create(
        created_by=None,
        organization=organization,
        url="https://hooks.example.com/training",
        events=["training.finished", "training.failed"],
    )
    dataset = dataset_from_file(
        organization=organization,
        name="support.csv",
        content=csv_bytes(synthetic_frame(rows=120)),
        columns=None,
        maximize=True,
    )
    dataset_id = dataset.pk

    with django_capture_on_commit_callbacks(execute=False):
        version = router_train_now(
            organization=organization, slug="support", name="Support", dataset=dataset, options={}
        )
        run = services.training_run_start(router=version.router, dataset=dataset)
        dataset.delete()  # the second run fails: its dataset is gone when it starts
        execution.training_run_execute(run_id=run.pk, worker="test")

    finished, failed = WebhookDelivery.objects.order_by("pk")
    assert finished.event_type == "training.finished"
    assert finished.payload["data"] | {"metrics": None, "finished_at": None} == {
        "training_run": version.router.runs.earliest("pk").pk,
        "router": "support",
        "dataset": dataset_id,
        "status": "succeeded",
        "version": 1,
        "activated": True,
        "metrics": None,
        "finished_at": None,
    }
    assert failed.event_type == "training.failed"
    assert failed.payload["data"]["training_run"] == run.pk
    assert "deleted" in failed.payload["data"]["error"]
