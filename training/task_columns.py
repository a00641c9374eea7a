"""Which columns of an upload name each row's task and subtask, and each row's task label.

A task column is mapped (``columns.task``) or found by its name: ``eval_name`` or ``task`` as they
are, else ``dataset``, ``benchmark``, ``source``, ``subject`` or ``category`` when the column reads
as labels (``label_like``: a column of numbers, of one value, of ids unique to their rows or of
free text is some other column that happens to have the name). A subtask column is mapped
(``columns.subtask``) or found beside the task column: ``subtask``, ``subject`` or ``category``,
guarded the same way. A row's label is ``task/subtask`` (``training/learner/task_labels.py``: the
learner's subtasks are shrunk toward their task; the report slices by task); a task cell holding
``parent/child`` names a subtask by itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.dataset_files import error_item, printable

TASK_COLUMNS = ("eval_name", "task")  # found by name, whatever they hold
GUARDED_TASK_COLUMNS = ("dataset", "benchmark", "source", "subject", "category")
SUBTASK_COLUMNS = ("subtask", "subject", "category")
MAX_TASK_CHARS = 100  # longer task names are cut: they label report slices


def label_like(column: pd.Series) -> bool:
    """Whether a column found by a guarded name reads as task labels: not numbers or booleans,
    two distinct non-empty values or more, at least two rows per value on average, and short."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return False
    values = column.dropna().astype(str).str.strip()
    values = values[values != ""]
    distinct = values.nunique()
    if distinct < 2 or distinct * 2 > len(column):
        return False
    # A CSV is read as text: numbers are told by their parse.
    if pd.to_numeric(values, errors="coerce").notna().all():
        return False
    return bool(values.str.len().median() <= MAX_TASK_CHARS)


def _found_task(frame: pd.DataFrame, names: list[str]) -> str | None:
    found = next((c for c in TASK_COLUMNS if c in names), None)
    if found is not None:
        return found
    return next((c for c in GUARDED_TASK_COLUMNS if c in names and label_like(frame[c])), None)


def _found_subtask(frame: pd.DataFrame, names: list[str], task: str) -> str | None:
    beside = (c for c in SUBTASK_COLUMNS if c in names and c != task)
    return next((c for c in beside if label_like(frame[c])), None)


def task_columns_plan(
    frame: pd.DataFrame, columns: dict[str, Any], shown: str
) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """(task column, subtask column, errors) of an upload with the ``columns`` mapping."""
    names = [str(c) for c in frame.columns]
    task = columns.get("task") or _found_task(frame, names)
    subtask = columns.get("subtask")
    if subtask is None and task is not None and task in names:
        subtask = _found_subtask(frame, names, task)
    errors = []
    for key, column in (("task", task), ("subtask", subtask)):
        if column is not None and column not in names:
            message = (
                f"columns.{key} names '{column}', which is not in the file. Columns found: {shown}"
            )
            errors.append(error_item(message, column=column))
    if subtask is not None and task is None:
        message = "columns.subtask needs a task column: name it 'task' or set columns.task."
        errors.append(error_item(message, column=subtask))
    return task, subtask, errors


def _names(values: list[Any], empty: str) -> list[str]:
    """Each cell as a short printable label; an empty cell is ``empty``."""
    names = []
    for value in values:
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        text = printable(text.strip())[:MAX_TASK_CHARS]
        names.append(text or empty)
    return names


def row_tasks(frame: pd.DataFrame, task: str, subtask: str | None) -> list[str]:
    """Each row's task label (an empty cell is the task "(none)"); with a subtask column,
    ``task/subtask`` where the subtask cell is not empty."""
    tasks = _names(frame[task].tolist(), "(none)")
    if subtask is None:
        return tasks
    children = _names(frame[subtask].tolist(), "")
    return [f"{t}/{c}" if c else t for t, c in zip(tasks, children, strict=True)]
