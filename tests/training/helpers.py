"""Small helpers for training API tests: upload a dataset and train through the API."""

from __future__ import annotations

import json
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.factories import organization_make
from tests.training.conftest import csv_bytes, synthetic_frame
from training import services
from training.models import TrainingRun


def upload(
    client: APIClient,
    content: bytes,
    *,
    filename: str = "data.csv",
    columns: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    data: dict[str, Any] = {
        "file": SimpleUploadedFile(filename, content),
        "name": filename,
        **fields,
    }
    if columns is not None:
        data["columns"] = json.dumps(columns)
    return client.post("/api/v1/datasets", data, format="multipart")


def big_training_run(rows: int) -> TrainingRun:
    """A run over ``rows`` long synthetic prompts: several seconds of training to interrupt."""
    organization = organization_make()
    frame = synthetic_frame(rows)
    frame["prompt"] = frame["prompt"] + " " + " ".join(f"context{i}" for i in range(150))
    dataset = services.dataset_create(
        organization=organization,
        name="big",
        upload=SimpleUploadedFile("big.csv", csv_bytes(frame)),
        columns=None,
        maximize=True,
    )
    services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    router = services.router_create(organization=organization, slug="r", name="r", candidates=[])
    return services.training_run_start(router=router, dataset=dataset, options={"folds": 5})
