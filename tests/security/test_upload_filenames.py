"""A dataset uploaded under a long file name (Django keeps up to 255 characters of it) and no
name of its own is named by the first 200 characters of the file name (the name column's size),
through the API and the dashboard: it was a 500 (the database refused the 201+ characters)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import KeyScope
from tests.factories import dashboard_client, key_client, key_make
from tests.training.conftest import csv_bytes, synthetic_frame
from training.models import Dataset

pytestmark = pytest.mark.django_db
LONG = "q" * 240 + ".csv"


def test_the_api_names_a_dataset_by_its_long_file_name_cut(tenants: Any, media: Any) -> None:
    api = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    upload = SimpleUploadedFile(LONG, csv_bytes(synthetic_frame()))

    answer = api.post("/api/v1/datasets", {"file": upload}, format="multipart")

    assert answer.status_code == 201, answer.content[:300]
    assert answer.json()["name"] == LONG[:200]
    assert answer.json()["original_filename"] == LONG


def test_the_dashboard_names_a_dataset_by_its_long_file_name_cut(tenants: Any, media: Any) -> None:
    client = dashboard_client(tenants.admin, tenants.organization)
    upload = SimpleUploadedFile(LONG, csv_bytes(synthetic_frame()))

    answer = client.post("/dashboard/datasets/", {"file": upload})

    assert answer.status_code == 302
    dataset = Dataset.objects.get(organization=tenants.organization)
    assert (dataset.name, dataset.original_filename) == (LONG[:200], LONG)
    assert dataset.file.name.endswith(".csv")
