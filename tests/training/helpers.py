"""Small helpers for training API tests: upload a dataset and train through the API."""

from __future__ import annotations

import json
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient


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
