"""Whether a ``/`` in a task name is a level below the tasks (``training/task_columns.py``,
``task_labels.split_parents``): ``columns.task_hierarchy`` says so, else each parent's names split
only where that parent has a task's subjects; a dataset's own name with a publisher prefix
(``openai/gsm8k``) stays one task, in the stored dataset, the learner and the report, even beside
a benchmark's many subjects."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from accounts.models import KeyScope
from tests.factories import key_client, key_make
from tests.migration.arena import arena_battles
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload
from training.ingest import (
    DatasetInvalidError,
    dataset_parse,
    normalized_from_parquet,
    normalized_to_parquet,
)
from training.learner.task_labels import split_parents
from training.models import Dataset

ROWS = 60
PUBLISHED = ["openai/gsm8k", "openai/humaneval", "cais/mmlu", "allenai/ai2_arc"]
SUBJECTS = ["mmlu/anatomy", "mmlu/college_physics", "mmlu/virology", "gsm8k"]
# MMLU's 57 subjects beside two publishers' datasets: 59 children of 3 parents, 19.7 on average
MIXED = [f"mmlu/s{i}" for i in range(57)] + ["openai/gsm8k", "cais/mmlu"]


def _named(names: list[str], rows: int = ROWS) -> pd.DataFrame:
    frame = synthetic_frame(rows).drop_duplicates("prompt").reset_index(drop=True)
    frame["eval_name"] = [names[i % len(names)] for i in range(len(frame))]
    return frame


def _levels(frame: pd.DataFrame, **columns: Any) -> tuple[set[str], set[str]]:
    """(the stored labels, their parent tasks) of an upload, after a round trip to Parquet."""
    parsed = dataset_parse(csv_bytes(frame), columns=columns or None)
    stored = normalized_from_parquet(normalized_to_parquet(parsed), parsed.models, parsed.binary)
    assert stored.tasks is not None and stored.task_parents is not None
    return set(stored.tasks), set(stored.task_parents)


@pytest.mark.parametrize(
    ("names", "split"),
    [
        (PUBLISHED, set()),  # publishers with one or two datasets each
        (["openai/gsm8k", "openai/humaneval"], set()),  # one publisher, two datasets
        (["openai/gsm8k", "cais/mmlu", "allenai/ai2_arc"], set()),  # one child per parent
        (["gsm8k", "humaneval"], set()),  # no "/" at all
        (SUBJECTS, {"mmlu"}),  # three subjects of one task beside a flat task
        ([f"mmlu/s{i}" for i in range(57)] + [f"bbh/t{i}" for i in range(23)], {"mmlu", "bbh"}),
        # each parent on its own: mmlu's subjects do not make openai's one dataset a level
        (["mmlu/anatomy", "mmlu/virology", "mmlu/law", "openai/gsm8k"], {"mmlu"}),
        (MIXED, {"mmlu"}),
        (["mmlu / anatomy", "mmlu/virology", "mmlu/law", "mmlu/"], {"mmlu"}),  # spaces, no child
    ],
)
def test_a_parents_names_split_at_the_slash_only_where_it_has_a_tasks_subjects(
    names: list[str], split: set[str]
) -> None:
    assert split_parents(names) == split


def test_beside_many_subjects_dataset_names_stay_whole_in_the_stored_dataset() -> None:
    # Decided on the average of all parents, openai and cais became parents again here.
    labels, parents = _levels(_named(MIXED, rows=4 * len(MIXED)))

    assert labels == set(MIXED)
    assert parents == {"mmlu", "openai/gsm8k", "cais/mmlu"}


def test_publisher_prefixed_dataset_names_stay_one_task_each() -> None:
    labels, parents = _levels(_named(PUBLISHED))

    assert labels == parents == set(PUBLISHED)


def test_subject_names_split_into_their_task_and_subject() -> None:
    labels, parents = _levels(_named(SUBJECTS))

    assert labels == set(SUBJECTS)
    assert parents == {"mmlu", "gsm8k"}


def test_the_task_hierarchy_option_overrides_the_automatic_rule_both_ways() -> None:
    forced_labels, forced = _levels(_named(PUBLISHED), task_hierarchy=True)
    flat_labels, flat = _levels(_named(SUBJECTS), task_hierarchy=False)

    assert forced_labels == set(PUBLISHED) and forced == {"openai", "cais", "allenai"}
    assert flat_labels == flat == set(SUBJECTS)


def _warnings(frame: pd.DataFrame, **columns: Any) -> list[str]:
    return dataset_parse(csv_bytes(frame), columns=columns or None).warnings


def test_the_dataset_warns_what_the_automatic_rule_decided_and_how_to_reverse_it() -> None:
    kept, split = _warnings(_named(PUBLISHED)), _warnings(_named(SUBJECTS))
    told = _warnings(_named(PUBLISHED), task_hierarchy=False)
    plain = _warnings(_named(["writing", "arithmetic"]))

    assert any("kept whole" in w and "task_hierarchy to true" in w for w in kept)
    assert any("split at '/' into 2 task(s)" in w and "to false" in w for w in split)
    assert not any("task_hierarchy" in w for w in [*told, *plain])


def test_the_warning_names_what_split_and_what_stayed_whole_in_a_mixed_set() -> None:
    mixed = _warnings(_named(MIXED, rows=4 * len(MIXED)))

    said = [w for w in mixed if "task_hierarchy" in w]
    assert len(said) == 1
    assert "Task names under 'mmlu' were split at '/'" in said[0]
    assert "'cais/mmlu', 'openai/gsm8k' were kept whole" in said[0]
    assert "to false to keep every name whole, or to true to split them all" in said[0]


def test_with_a_subtask_column_a_task_name_holding_a_slash_stays_whole() -> None:
    frame = _named(["openai/gsm8k", "cais/mmlu"])
    frame["subject"] = [f"s{i % 3}" for i in range(len(frame))]

    labels, parents = _levels(frame)

    assert parents == {"openai/gsm8k", "cais/mmlu"}
    assert "openai/gsm8k/s0" in labels


def test_task_hierarchy_false_looks_for_no_subtask_column() -> None:
    frame = _named(["writing", "arithmetic"])
    frame["subject"] = [f"s{i % 3}" for i in range(len(frame))]

    labels, parents = _levels(frame, task_hierarchy=False)

    assert labels == parents == {"writing", "arithmetic"}


def test_a_task_hierarchy_that_is_not_a_boolean_invalidates_the_dataset_by_itself() -> None:
    # The dashboard's form reads the mapping as JSON without the API's checks.
    with pytest.raises(DatasetInvalidError) as raised:
        dataset_parse(csv_bytes(_named(PUBLISHED)), columns={"task_hierarchy": "no"})

    assert "columns.task_hierarchy must be true" in raised.value.errors[0]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["false", 1, None, ["x"]])
def test_the_upload_api_refuses_a_task_hierarchy_that_is_not_a_boolean(
    tenants: Any, media: Any, value: Any
) -> None:
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))

    response = upload(api, csv_bytes(_named(PUBLISHED)), columns={"task_hierarchy": value})

    assert response.status_code == 400
    assert "task_hierarchy must be true" in str(response.json())


@pytest.mark.django_db
def test_the_upload_api_refuses_task_hierarchy_beside_a_subtask_column(
    tenants: Any, media: Any
) -> None:
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    columns = {"task": "eval_name", "subtask": "eval_name", "task_hierarchy": True}

    response = upload(api, csv_bytes(_named(PUBLISHED)), columns=columns)

    assert response.status_code == 400
    assert "give task_hierarchy or subtask, not both" in str(response.json())


def _report(api: APIClient, capture: Any, content: bytes, columns: Any, slug: str) -> Any:
    with capture(execute=True):
        response = upload(api, content, columns=columns)
    assert response.status_code == 201, response.json()
    assert response.json()["columns"] == (columns or {})  # stored with the dataset
    return _trained_report(api, capture, response.json()["id"], slug)


def _trained_report(api: APIClient, capture: Any, dataset: int, slug: str) -> Any:
    api.post("/api/v1/routers", {"slug": slug}, format="json")
    with capture(execute=True):
        started = api.post(
            f"/api/v1/routers/{slug}/train",
            {"dataset": dataset, "options": {"folds": 3}},
            format="json",
        )
    run = api.get(f"/api/v1/training-runs/{started.json()['id']}").json()
    assert run["status"] == "succeeded", run["error"]
    return api.get(f"/api/v1/routers/{slug}/versions/1/report").json()


def _published() -> bytes:
    frame = synthetic_frame(150).drop_duplicates("prompt")
    writing = frame["prompt"].str.contains("#").to_numpy()
    frame["eval_name"] = np.where(writing, "openai/humaneval", "openai/gsm8k")
    frame.loc[frame.index[::5], "eval_name"] = "cais/mmlu"
    return csv_bytes(frame)


def _mixed() -> bytes:
    """12 MMLU subjects beside two publishers' datasets: 14 children of 3 parents."""
    frame = synthetic_frame(150).drop_duplicates("prompt").reset_index(drop=True)
    frame["eval_name"] = [f"mmlu/s{i % 12}" for i in range(len(frame))]
    frame.loc[frame.index[::5], "eval_name"] = "cais/mmlu"
    frame.loc[frame.index[1::5], "eval_name"] = "openai/gsm8k"
    return csv_bytes(frame)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "columns", "slices"),
    [
        # Before task_hierarchy these sliced as "openai" and "cais": two datasets in one slice.
        (_published(), None, {"openai/gsm8k", "openai/humaneval", "cais/mmlu"}),
        (_published(), {"task_hierarchy": True}, {"openai", "cais"}),  # the names before "/"
        # Decided on the average of all parents, these sliced as "mmlu", "openai" and "cais".
        (_mixed(), None, {"mmlu", "openai/gsm8k", "cais/mmlu"}),
    ],
    ids=["publishers", "publishers-split", "benchmark-beside-datasets"],
)
def test_the_report_slices_by_the_parents_stored_at_validation(
    tenants: Any,
    media: Any,
    eager_celery: None,
    django_capture_on_commit_callbacks: Any,
    content: bytes,
    columns: Any,
    slices: set[str],
) -> None:
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))

    report = _report(api, django_capture_on_commit_callbacks, content, columns, "r")

    assert {row["slice"] for row in report["slices"]["rows"]} == slices


def test_task_hierarchy_without_a_task_column_invalidates_the_dataset() -> None:
    frame = synthetic_frame(60).drop_duplicates("prompt")

    with pytest.raises(DatasetInvalidError) as raised:
        dataset_parse(csv_bytes(frame), columns={"task_hierarchy": True})

    message = raised.value.errors[0]["message"]
    assert "columns.task_hierarchy needs a task column, and this file has none" in message


def test_task_hierarchy_on_a_battles_file_decides_as_in_a_score_file() -> None:
    battles = arena_battles("strong-model", "weak-model")
    battles["task"] = ["mmlu/anatomy", "mmlu/virology", "mmlu/law"] * 133 + ["mmlu/law"]

    whole = dataset_parse(csv_bytes(battles), columns={"task_hierarchy": False})
    split = dataset_parse(csv_bytes(battles))
    with pytest.raises(DatasetInvalidError) as raised:
        dataset_parse(csv_bytes(battles.drop(columns="task")), columns={"task_hierarchy": True})

    assert whole.tasks is not None and whole.task_parents == whole.tasks
    assert set(split.task_parents or []) == {"mmlu"} and split.tasks == whole.tasks
    message = raised.value.errors[0]["message"]
    assert "columns.task_hierarchy needs a task column, and this file has none" in message


@pytest.mark.django_db
def test_an_uploaded_task_hierarchy_without_tasks_leaves_the_dataset_invalid_with_the_reason(
    tenants: Any, media: Any, eager_celery: None, django_capture_on_commit_callbacks: Any
) -> None:
    # The file is read after the upload's 201, as for a columns.task naming no column.
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    frame = synthetic_frame(60).drop_duplicates("prompt")

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api, csv_bytes(frame), columns={"task_hierarchy": True})
    assert response.status_code == 201
    dataset = api.get(f"/api/v1/datasets/{response.json()['id']}").json()

    assert dataset["status"] == "invalid"
    assert "task_hierarchy needs a task column" in dataset["errors"][0]["message"]


def _stored_before_parents(dataset: Dataset, uploaded: pd.DataFrame) -> None:
    """The dataset's parsed Parquet as validation wrote it before ``task_parent`` was stored:
    each prompt's task cell as uploaded, and no parents."""
    with dataset.parsed_file.open("rb") as handle:
        frame = pd.read_parquet(io.BytesIO(handle.read()))
    assert "task_parent" in frame.columns and "task" in frame.columns
    cells = dict(zip(uploaded["prompt"], uploaded["eval_name"], strict=True))
    frame["task"] = [cells[prompt] for prompt in frame["prompt"]]
    buffer = io.BytesIO()
    frame.drop(columns="task_parent").to_parquet(buffer, index=False)
    name = dataset.parsed_file.name
    default_storage.delete(name)
    assert default_storage.save(name, ContentFile(buffer.getvalue())) == name


def _one_benchmark() -> pd.DataFrame:
    frame = synthetic_frame(150).drop_duplicates("prompt").reset_index(drop=True)
    frame["eval_name"] = [f"mmlu / s{i % 3}" for i in range(len(frame))]
    return frame


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("frame", "slices"),
    [
        # Stored today these names stay whole (the report test above); stored without their
        # parents they split at the first "/" as they did when that dataset was validated.
        (pd.read_csv(io.BytesIO(_published())), {"openai", "cais"}),
        # One parent: the report slices by the labels as stored, not normalised ("mmlu/s0").
        (_one_benchmark(), {"mmlu / s0", "mmlu / s1", "mmlu / s2"}),
    ],
    ids=["publishers", "one-benchmark"],
)
def test_a_dataset_stored_before_the_parents_keeps_its_first_slash_split_when_retrained(
    tenants: Any,
    media: Any,
    eager_celery: None,
    django_capture_on_commit_callbacks: Any,
    frame: pd.DataFrame,
    slices: set[str],
) -> None:
    api: APIClient = key_client(key_make(tenants.organization, KeyScope.MANAGE))
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api, csv_bytes(frame))
    _stored_before_parents(Dataset.objects.get(pk=response.json()["id"]), frame)

    report = _trained_report(api, django_capture_on_commit_callbacks, response.json()["id"], "old")

    assert {row["slice"] for row in report["slices"]["rows"]} == slices
