"""The report's slices follow the dataset's task column (``eval_name`` or ``columns.task``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope
from tests.factories import key_client, key_make
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_api(tenants: Any) -> APIClient:
    return key_client(key_make(tenants.organization, KeyScope.MANAGE))


def _report(api: APIClient, capture: Any, content: bytes, columns: Any = None) -> Any:
    with capture(execute=True):
        response = upload(api, content, columns=columns)
    assert response.status_code == 201, response.json()
    api.post("/api/v1/routers", {"slug": "r"}, format="json")
    with capture(execute=True):
        started = api.post(
            "/api/v1/routers/r/train",
            {"dataset": response.json()["id"], "options": {"folds": 3}},
            format="json",
        )
    run = api.get(f"/api/v1/training-runs/{started.json()['id']}").json()
    assert run["status"] == "succeeded", run["error"]
    return api.get("/api/v1/routers/r/versions/1/report").json()


def _with_tasks(column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = synthetic_frame(150)
    frame[column] = np.where(frame["prompt"].str.contains("#"), "writing", "arithmetic")
    frame = frame.drop_duplicates("prompt")
    # A repeated prompt: the first row is kept, and so is its task.
    return frame, frame.iloc[[0]].assign(**{column: "duplicate"})


def test_an_eval_name_column_is_found_and_the_report_slices_by_it(
    admin_api: APIClient, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    frame, duplicate = _with_tasks("eval_name")
    content = csv_bytes(pd.concat([frame, duplicate], ignore_index=True))

    report = _report(admin_api, django_capture_on_commit_callbacks, content)

    slices = report["slices"]
    assert slices["by"] == "task"
    rows = {row["slice"]: row for row in slices["rows"]}
    assert set(rows) == {"writing", "arithmetic"}
    assert sum(row["rows"] for row in rows.values()) == len(frame)
    assert rows["arithmetic"]["best_single"] == "math-model"
    assert rows["writing"]["best_single"] == "prose-model"
    for row in rows.values():
        low, high = row["routed_ci95"]
        assert low <= row["routed"] <= high


def test_columns_task_names_the_task_column(
    admin_api: APIClient, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    frame, _ = _with_tasks("subject")
    columns = {"task": "subject"}

    report = _report(admin_api, django_capture_on_commit_callbacks, csv_bytes(frame), columns)

    assert report["slices"]["by"] == "task"
    assert {row["slice"] for row in report["slices"]["rows"]} == {"writing", "arithmetic"}


def test_without_a_task_column_the_report_slices_by_cluster(
    admin_api: APIClient, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    report = _report(admin_api, django_capture_on_commit_callbacks, csv_bytes(synthetic_frame()))

    assert report["slices"]["by"] == "cluster"


def test_a_task_column_missing_from_the_file_is_a_clear_error(
    admin_api: APIClient, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(admin_api, csv_bytes(synthetic_frame(60)), columns={"task": "topic"})
    dataset = admin_api.get(f"/api/v1/datasets/{response.json()['id']}").json()

    assert dataset["status"] == "invalid"
    assert "columns.task names 'topic'" in dataset["errors"][0]["message"]


def test_a_task_that_is_not_a_column_name_is_a_400(admin_api: APIClient, media: Any) -> None:
    response = upload(admin_api, csv_bytes(synthetic_frame(60)), columns={"task": ["a"]})

    assert response.status_code == 400
    assert "task must be a column name" in str(response.json())
