"""Which upload columns name each row's task and subtask (``training/task_columns.py``): a
subtask column joins its task as ``task/subtask``; other datasets' names for a task column are
found when they hold labels, and passed over when they hold numbers, ids or one value."""

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
from training.ingest import DatasetInvalidError, dataset_parse

ROWS = 60


def _frame(**columns: Any) -> pd.DataFrame:
    frame = synthetic_frame(ROWS)
    for name, values in columns.items():
        frame[name] = values
    return frame


def _kind(frame: pd.DataFrame) -> np.ndarray:
    return np.where(frame["prompt"].str.contains("#"), "writing", "arithmetic")


def _tasks(frame: pd.DataFrame, columns: dict[str, Any] | None = None) -> list[str] | None:
    return dataset_parse(csv_bytes(frame), columns=columns).tasks


def test_a_mapped_subtask_column_joins_its_task_as_parent_slash_child() -> None:
    frame = synthetic_frame(ROWS)
    frame = _frame(
        eval_name=_kind(frame), topic=[f"t{i % 3}" if i % 5 else "" for i in range(ROWS)]
    )

    tasks = _tasks(frame, {"subtask": "topic"})

    assert tasks is not None
    expected = [f"{k}/t{i % 3}" if i % 5 else str(k) for i, k in enumerate(_kind(frame))]
    assert tasks == expected  # an empty subtask cell leaves the row's task alone


def test_a_subject_column_beside_eval_name_is_found_as_its_subtask() -> None:
    frame = synthetic_frame(ROWS)
    frame = _frame(eval_name=_kind(frame), subject=[f"s{i % 4}" for i in range(ROWS)])

    tasks = _tasks(frame)

    assert tasks is not None and tasks[:2] == [f"{_kind(frame)[0]}/s0", f"{_kind(frame)[1]}/s1"]


@pytest.mark.parametrize("name", ["dataset", "benchmark", "source", "subject", "category"])
def test_other_names_for_a_task_column_are_found_when_they_hold_labels(name: str) -> None:
    frame = synthetic_frame(ROWS)
    frame = _frame(**{name: _kind(frame)})

    assert _tasks(frame) == _kind(frame).tolist()


@pytest.mark.parametrize(
    "values",
    [
        [i % 3 for i in range(ROWS)],  # numbers
        [f"row-{i}" for i in range(ROWS)],  # an id unique to its row
        ["human"] * ROWS,  # one value
        [f"{'a long sentence of free text, not a label at all; ' * 3}{i % 2}" for i in range(ROWS)],
    ],
)
def test_a_guarded_name_holding_no_labels_is_passed_over(values: list[Any]) -> None:
    frame = synthetic_frame(ROWS)

    # "dataset" is tried first and holds no labels; "category" (tried last) does.
    tasks = _tasks(_frame(dataset=values, category=_kind(frame)))

    assert tasks == _kind(frame).tolist()


def test_a_subtask_column_without_a_task_column_is_a_clear_error() -> None:
    with pytest.raises(DatasetInvalidError) as raised:
        _tasks(_frame(topic=["a", "b"] * (ROWS // 2)), {"subtask": "topic"})

    assert "columns.subtask needs a task column" in raised.value.errors[0]["message"]


@pytest.mark.django_db
def test_the_upload_api_takes_a_subtask_column_name(tenants: Any, media: Any) -> None:
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    content = csv_bytes(synthetic_frame(ROWS))

    accepted = upload(api, content, columns={"task": "prompt", "subtask": "prompt"})
    refused = upload(api, content, columns={"subtask": ["a"]})

    assert accepted.status_code == 201, accepted.json()
    assert refused.status_code == 400 and "subtask must be a column name" in str(refused.json())
