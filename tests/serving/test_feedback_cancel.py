"""Cancelling a retrain from feedback while its dataset builds: the run ends cancelled, its
dataset is not left ready, nothing trains, and a second cancel or a late delivery changes
nothing. The cancel comes at a chosen step of the build (a hook), not after a sleep."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from routing.feedback import feedback_retrain_build, router_feedback
from tests.routing.world import World
from tests.serving.test_feedback_queue import _queued, builds_held  # noqa: F401 (fixture)
from training import feedback_jobs
from training.models import Router, RouterVersion, RunStatus, TrainingRun

pytestmark = pytest.mark.usefixtures("eager_celery", "media", "builds_held")


def _cancelled_while_building(manage: Any, body: dict[str, Any]) -> None:
    """The run cancelled (API) while its build runs, and a second cancel changes nothing."""
    assert manage.post(f"/api/v1/training-runs/{body['id']}/cancel").status_code == 200
    again = manage.post(f"/api/v1/training-runs/{body['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]["message"]


def _ends_cancelled(manage: Any, body: dict[str, Any], versions: int) -> None:
    """The run cancelled with no training, its dataset not ready, a redelivery changing nothing."""
    assert feedback_retrain_build(body["id"]) == RunStatus.CANCELLED  # a late redelivery
    run = manage.get(f"/api/v1/training-runs/{body['id']}").json()
    assert run["status"] == "cancelled" and run["version"] is None, run
    dataset = manage.get(f"/api/v1/datasets/{body['dataset']}").json()
    assert dataset["status"] == "invalid", dataset
    assert dataset["errors"][0]["message"] == "Not built: the retrain was cancelled first."
    assert RouterVersion.objects.count() == versions
    assert TrainingRun.objects.get(pk=body["id"]).attempts == 0  # training never claimed it


def test_a_retrain_cancelled_while_its_build_reads_ends_cancelled_with_no_ready_dataset(
    world: World,
) -> None:
    manage, body = _queued(world)
    versions = RouterVersion.objects.count()

    def read(router: Router, before: datetime) -> Any:  # the user cancels mid-build
        _cancelled_while_building(manage, body)
        return router_feedback(router, before=before)

    assert feedback_jobs.feedback_build(body["id"], read) == RunStatus.CANCELLED
    _ends_cancelled(manage, body, versions)


def test_a_retrain_cancelled_after_its_dataset_validated_does_not_train_or_keep_it_ready(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    manage, body = _queued(world)
    versions = RouterVersion.objects.count()
    parse = feedback_jobs.services.dataset_parse

    def then_cancelled(*args: Any) -> Any:  # validated, then cancelled before training queues
        parsed = parse(*args)
        assert parsed.status == "ready"
        _cancelled_while_building(manage, body)
        return parsed

    monkeypatch.setattr(feedback_jobs.services, "dataset_parse", then_cancelled)
    assert feedback_retrain_build(body["id"]) == RunStatus.CANCELLED
    monkeypatch.setattr(feedback_jobs.services, "dataset_parse", parse)
    _ends_cancelled(manage, body, versions)
