"""Datasets RouterHub builds itself from feedback are not the organization's uploads: they count
toward neither its validating-count nor its storage limit (``training.dataset_services``).

On the old code they counted toward both: an organization that retrained from feedback could be
refused its own uploads (409) by datasets it never uploaded — while a retrain was building
(its dataset ``validating``), and for good once the built dataset's bytes filled the quota.
"""

from __future__ import annotations

from typing import Any

import pytest

from routing.feedback import feedback_retrain_build
from tests.routing.world import World
from tests.security.test_dataset_quota import ROWS
from tests.serving.test_feedback_queue import _queued, builds_held
from tests.training.helpers import upload
from training.dataset_services import BUILT_PREFIX
from training.models import Dataset, DatasetStatus, RunStatus

__all__ = ["builds_held"]  # the fixture

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def test_datasets_built_from_feedback_leave_the_upload_limits_to_uploads(
    world: World, builds_held: list[int], settings: Any
) -> None:
    manage, body = _queued(world)  # trained on an upload; a retrain queued, its dataset unbuilt
    uploaded = Dataset.objects.get(organization=world.organization, name="support.csv")
    settings.DATASETS_MAX_VALIDATING_PER_ORGANIZATION = 1
    settings.DATASETS_MAX_BYTES_PER_ORGANIZATION = uploaded.size_bytes + len(ROWS)

    while_building = upload(manage, ROWS, filename="while-building.csv")
    assert while_building.status_code == 201, while_building.content
    assert manage.delete(f"/api/v1/datasets/{while_building.json()['id']}").status_code == 204

    assert feedback_retrain_build(body["id"]) == RunStatus.SUCCEEDED
    built = Dataset.objects.get(pk=body["dataset"])
    assert built.status == DatasetStatus.READY and built.size_bytes > 0
    assert built.file.name.startswith(BUILT_PREFIX)

    after_built = upload(manage, ROWS, filename="after-built.csv")
    one_too_many = upload(manage, ROWS, filename="one-too-many.csv")

    assert after_built.status_code == 201, after_built.content
    assert one_too_many.status_code == 409  # uploads still count
    assert one_too_many.json()["error"]["metadata"]["stored_bytes"] == (
        uploaded.size_bytes + len(ROWS)
    )
