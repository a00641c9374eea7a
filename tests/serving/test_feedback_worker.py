"""Retrain from feedback on a real Celery worker: the request answers with the run queued and
its dataset not built yet; the worker builds the dataset and trains, or records why it could not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from routerhub.celery import app
from tests.celery_conf import celery_conf
from tests.processes import training_workers, until
from tests.routing.world import World
from tests.serving.test_feedback_queue import served_with_feedback
from tests.serving.test_router_serving import train_router
from training.models import Dataset, RunStatus, TrainingRun

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def trained(world: World, media: Path, eager_celery: None) -> Iterator[Any]:
    """The ``support`` router trained in this process, and its feedback; tasks go to the broker
    from here on (the eager setting is switched off for the rest of the test)."""
    if connection.vendor == "sqlite":
        pytest.skip("the worker needs a database server it shares with the test")
    manage, _ = train_router(world)
    served_with_feedback(world)
    with celery_conf(task_always_eager=False):
        assert not app.conf.task_always_eager
        yield manage


def _finished(run_id: int) -> Callable[[], bool]:
    return lambda: TrainingRun.objects.get(pk=run_id).is_finished


def test_the_worker_builds_the_dataset_and_trains_after_the_request_answered(
    trained: Any, media: Path, tmp_path: Path
) -> None:
    with training_workers(media, tmp_path) as start:
        response = trained.post("/api/v1/routers/support/retrain-from-feedback")
        assert response.status_code == 202, response.json()
        body = response.json()
        assert body["status"] == "queued" and body["feedback_rows"] == 3
        run = TrainingRun.objects.get(pk=body["id"])
        # No worker yet: the request did not build anything itself.
        assert run.stage == "building_dataset"
        assert Dataset.objects.get(pk=body["dataset"]).status == "validating"

        start()
        until(_finished(run.pk), 90, "the worker to build the dataset and train")

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    dataset = Dataset.objects.get(pk=body["dataset"])
    assert dataset.status == "ready" and dataset.rows == 180 + 3
    assert run.version is not None and run.version.number == 2


def test_a_feedback_dataset_the_worker_cannot_validate_ends_failed_with_the_reason(
    trained: Any, media: Path, tmp_path: Path
) -> None:
    # The worker's row limit lets the 180 rows trained on through, not 3 more.
    with training_workers(media, tmp_path, DATASET_MAX_ROWS="181") as start:
        body = trained.post("/api/v1/routers/support/retrain-from-feedback").json()
        start()
        until(_finished(body["id"]), 90, "the worker to give up on the dataset")

    run = trained.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "failed"
    assert run["error"].startswith("The feedback dataset did not validate:")
    dataset = trained.get(f"/api/v1/datasets/{body['dataset']}").json()
    assert dataset["status"] == "invalid"
    assert "181" in dataset["errors"][0]["message"].replace(",", "")
