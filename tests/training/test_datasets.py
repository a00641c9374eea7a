"""Dataset layouts that must be read, and a malformed-file corpus that must end ``invalid``."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import organization_make
from tests.training.conftest import csv_bytes, parquet_bytes, synthetic_frame
from training import services
from training.models import Dataset, DatasetStatus

pytestmark = pytest.mark.django_db


def _validated(content: bytes, filename: str = "data.csv", **kwargs: Any) -> Dataset:
    dataset = services.dataset_create(
        organization=organization_make(),
        name=filename,
        upload=SimpleUploadedFile(filename, content),
        columns=kwargs.pop("columns", None),
        maximize=kwargs.pop("maximize", True),
    )
    result = services.dataset_validate(dataset_id=dataset.pk)
    assert result is not None
    return result


def _messages(dataset: Dataset) -> str:
    return " | ".join(e["message"] for e in dataset.errors)


def test_not_diamond_layout_reads_scores_and_costs(media: Any) -> None:
    dataset = _validated(csv_bytes(synthetic_frame(60)))
    assert dataset.status == DatasetStatus.READY, dataset.errors
    assert dataset.model_ids == ["math-model", "prose-model"]
    assert dataset.has_costs


def test_explicit_mapping_reads_routerbench_style_columns(media: Any) -> None:
    frame = synthetic_frame(60).rename(
        columns={
            "math-model/score": "math-model",
            "prose-model/score": "prose-model",
            "math-model/cost": "math-model|total_cost",
            "prose-model/cost": "prose-model|total_cost",
        }
    )
    frame.insert(0, "Unnamed: 0", range(len(frame)))
    columns = {
        "prompt": "prompt",
        "scores": {"math-model": "math-model", "prose-model": "prose-model"},
        "costs": {"math-model": "math-model|total_cost", "prose-model": "prose-model|total_cost"},
    }
    dataset = _validated(csv_bytes(frame), columns=columns)
    assert dataset.status == DatasetStatus.READY, dataset.errors
    assert [m["mean_cost"] for m in dataset.model_summary] == [0.001, 0.01]


def test_jsonl_with_openai_messages_and_boolean_words(media: Any) -> None:
    frame = synthetic_frame(40)
    lines = [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": p},
                ],
                "a/score": "True" if s else "false",
                "b/score": bool(t),
            }
        )
        for p, s, t in zip(
            frame["prompt"], frame["math-model/score"], frame["prose-model/score"], strict=True
        )
    ]
    dataset = _validated("\n".join(lines).encode(), "data.jsonl")
    assert dataset.status == DatasetStatus.READY, dataset.errors
    assert dataset.format == "jsonl"
    assert dataset.model_summary[0]["binary"] is True


def test_parquet_with_numeric_scores_and_minimize(media: Any) -> None:
    frame = synthetic_frame(40).drop(columns=["math-model/cost", "prose-model/cost"])
    frame["math-model/score"] = frame["math-model/score"] * 2.5
    dataset = _validated(parquet_bytes(frame), "data.parquet", maximize=False)
    assert dataset.status == DatasetStatus.READY, dataset.errors
    assert dataset.format == "parquet" and not dataset.has_costs
    assert dataset.model_summary[0]["binary"] is False


def test_duplicates_and_empty_cells_are_dropped_or_filled_and_reported(media: Any) -> None:
    frame = synthetic_frame(40)
    frame = pd.concat([frame, frame.iloc[:5]], ignore_index=True)
    frame["math-model/score"] = frame["math-model/score"].astype(object)
    frame.loc[3, "math-model/score"] = ""
    frame.loc[4, "prompt"] = " "
    dataset = _validated(csv_bytes(frame))
    assert dataset.status == DatasetStatus.READY, dataset.errors
    assert dataset.rows == 40  # 45 rows, 1 empty prompt, 4 duplicates (row 4 lost its twin)
    warnings = " ".join(dataset.warnings)
    assert "4 duplicate prompt" in warnings
    assert "1 row(s) with an empty prompt" in warnings
    assert "1 empty score cell(s) for 'math-model'" in warnings
    assert dataset.model_summary[0]["empty_cells"] == 1


def _latin1() -> bytes:
    frame = synthetic_frame(40)
    frame.loc[7, "prompt"] = "Qu'est-ce qu'un café crème ?"
    return frame.to_csv(index=False).encode("latin-1")


def _non_numeric() -> bytes:
    frame = synthetic_frame(40)
    frame["prose-model/score"] = frame["prose-model/score"].astype(object)
    frame.loc[11, "prose-model/score"] = "great"
    return csv_bytes(frame)


def _huge_cell() -> bytes:
    frame = synthetic_frame(40)
    frame.loc[2, "prompt"] = "word " * 40_000
    return csv_bytes(frame)


def _parquet_wrong_types() -> bytes:
    frame = synthetic_frame(40)
    frame["prompt"] = range(len(frame))
    frame["math-model/score"] = [[1, 2]] * len(frame)
    return parquet_bytes(frame)


MALFORMED: dict[str, tuple[Any, str, tuple[int | None, str | None] | None]] = {
    "wrong encoding": (_latin1, "not UTF-8", None),
    "missing prompt column": (
        lambda: csv_bytes(synthetic_frame(40).rename(columns={"prompt": "question"})),
        "No prompt column",
        (None, "prompt"),
    ),
    "non-numeric scores": (_non_numeric, "'great' is not a score", (12, "prose-model/score")),
    "one model only": (
        lambda: csv_bytes(
            synthetic_frame(40).drop(columns=["prose-model/score", "prose-model/cost"])
        ),
        "Only one model",
        None,
    ),
    "ten rows": (lambda: csv_bytes(synthetic_frame(10)), "Only 10 usable row(s)", None),
    "huge cell": (_huge_cell, "the limit is 100,000", (3, "prompt")),
    "parquet with wrong types": (_parquet_wrong_types, "prompts must be text", (1, "prompt")),
    "pickle renamed csv": (
        lambda: pickle.dumps(synthetic_frame(40).to_dict()),
        "Python pickle",
        None,
    ),
    "empty file": (lambda: b"", "empty", None),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_ends_invalid_with_an_actionable_message(case: str, media: Any) -> None:
    make, expected, location = MALFORMED[case]

    dataset = _validated(make(), "upload.csv")

    assert dataset.status == DatasetStatus.INVALID
    assert expected in _messages(dataset)
    if location is not None:
        assert (dataset.errors[0]["row"], dataset.errors[0]["column"]) == location


def test_errors_are_capped_at_one_hundred(media: Any) -> None:
    frame = synthetic_frame(300)
    frame["math-model/score"] = "n/a"
    dataset = _validated(csv_bytes(frame))
    assert dataset.status == DatasetStatus.INVALID
    assert len(dataset.errors) == 100
    assert dataset.errors[0] == {
        "row": 1,
        "column": "math-model/score",
        "message": "Row 1: 'n/a' is not a score (use true/false, 0/1 or a number; leave the "
        "cell empty where the model has no score, which counts as its worst).",
    }


def test_validating_twice_changes_nothing(media: Any) -> None:
    dataset = _validated(csv_bytes(synthetic_frame(40)))
    validated_at = dataset.validated_at
    again = services.dataset_validate(dataset_id=dataset.pk)
    assert again is not None and again.validated_at == validated_at


def test_an_upload_over_the_size_limit_is_refused_with_413(settings: Any, media: Any) -> None:
    from rest_framework.test import APIClient

    from accounts.models import KeyScope
    from tests.factories import key_make

    settings.DATASET_MAX_BYTES = 1000
    organization = organization_make()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_make(organization, KeyScope.MANAGE)}")
    response = client.post(
        "/api/v1/datasets",
        {"file": SimpleUploadedFile("big.csv", csv_bytes(synthetic_frame(100)))},
        format="multipart",
    )
    assert response.status_code == 413
    assert response.json()["error"]["message"].endswith("the limit is 1.0 KB.")
