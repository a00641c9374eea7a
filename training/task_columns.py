"""Which columns of an upload name each row's task and subtask, and each row's task label.

A task column is mapped (``columns.task``) or found by its name: ``eval_name`` or ``task`` as they
are, else ``dataset``, ``benchmark``, ``source``, ``subject`` or ``category`` when the column reads
as labels (``label_like``: a column of numbers, of one value, of ids unique to their rows or of
free text is some other column that happens to have the name). A subtask column is mapped
(``columns.subtask``) or found beside the task column: ``subtask``, ``subject`` or ``category``,
guarded the same way. A row's label is ``task/subtask`` (``training/learner/task_labels.py``: the
learner's subtasks are shrunk toward their task; the report slices by task).

Without a subtask column a task cell ``parent/child`` may name a subtask by itself:
``columns.task_hierarchy`` true splits every task name at its first ``/``, false keeps them whole
(and looks for no subtask column), and without it each parent decides for its own names: they
split when it has three distinct children or more (``task_labels.split_parents``: ``mmlu/anatomy``,
``mmlu/virology``, … split), else stay whole (``openai/gsm8k``, ``cais/mmlu``: dataset names). With a subtask column the
task names stay whole: the column gives the level below them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.dataset_files import error_item, printable
from training.learner.task_hint import MAX_TASK_CHARS as MAX_LABEL_CHARS
from training.learner.task_labels import (
    MIN_CHILDREN_PER_PARENT,
    SEPARATOR,
    name_levels,
    split_parents,
)

TASK_COLUMNS = ("eval_name", "task")  # found by name, whatever they hold
GUARDED_TASK_COLUMNS = ("dataset", "benchmark", "source", "subject", "category")
SUBTASK_COLUMNS = ("subtask", "subject", "category")
MAX_TASK_CHARS = 100  # longer task names are cut: they label report slices
# columns.task_hierarchy says how task names split: refused, not ignored, where there are none
HIERARCHY_NEEDS_TASKS = "columns.task_hierarchy needs a task column, and this file has none."


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


def task_hierarchy_problem(columns: dict[str, Any]) -> str | None:
    """What is wrong with ``columns.task_hierarchy``, if anything: it is a JSON boolean (left
    out: the automatic rule), and not beside ``columns.subtask``, which names the level below
    the tasks itself."""
    if "task_hierarchy" not in columns:
        return None
    if not isinstance(columns["task_hierarchy"], bool):
        return (
            "task_hierarchy must be true (split task names at '/') or false (keep them whole); "
            "leave it out to split only names that read as a task's subjects"
        )
    if "subtask" in columns:
        return (
            "give task_hierarchy or subtask, not both: a subtask column names the level below "
            "the tasks, and task names are then kept whole"
        )
    return None


def task_columns_plan(
    frame: pd.DataFrame, columns: dict[str, Any], shown: str
) -> tuple[str | None, str | None, list[dict[str, Any]]]:
    """(task column, subtask column, errors) of an upload with the ``columns`` mapping."""
    names = [str(c) for c in frame.columns]
    task = columns.get("task") or _found_task(frame, names)
    subtask = columns.get("subtask")
    # An explicit hierarchy setting says where the levels are: no column is guessed for them.
    guessed = columns.get("task_hierarchy") is None
    if subtask is None and guessed and task is not None and task in names:
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
    problem = task_hierarchy_problem(columns)
    if problem is not None:
        errors.append(error_item(f"columns.{problem}"))
    elif task is None and "task_hierarchy" in columns:
        message = f"{HIERARCHY_NEEDS_TASKS} Name it 'task' or set columns.task."
        errors.append(error_item(message, column="task"))
    return task, subtask, errors


def _names(values: list[Any], empty: str) -> list[str]:
    """Each cell as a short printable label; an empty cell is ``empty``."""
    names = []
    for value in values:
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        text = printable(text.strip())[:MAX_TASK_CHARS]
        names.append(text or empty)
    return names


def row_tasks(
    frame: pd.DataFrame, task: str, subtask: str | None, hierarchy: bool | None = None
) -> tuple[list[str], list[str]]:
    """Each row's (task label, parent task); an empty task cell is the task "(none)". With a
    subtask column the label is ``task/subtask`` where the subtask cell is not empty, under the
    whole task name; without one a task name splits at its first ``/`` when ``hierarchy`` says
    so (None: when its parent has subjects enough, ``split_parents``, each parent on its own)."""
    tasks = _names(frame[task].tolist(), "(none)")
    if subtask is not None:
        children = _names(frame[subtask].tolist(), "")
        # ``task/subtask`` cut to the longest label a stored task hint (and a request) may name
        labels = [
            f"{t}/{c[: MAX_LABEL_CHARS - len(t) - 1]}" if c else t
            for t, c in zip(tasks, children, strict=True)
        ]
        return labels, tasks
    if hierarchy is False:
        return tasks, tasks
    return name_levels(tasks, split_parents(tasks) if hierarchy is None else None)


def task_hierarchy_note(labels: list[str], parents: list[str]) -> str | None:
    """What the automatic rule made of task names holding a ``/`` (a warning on the dataset,
    so its owner sees the decision and the option that reverses it); None without such names."""
    split = sorted(
        {parent for label, parent in zip(labels, parents, strict=True) if label != parent}
    )
    kept = sorted({label for label, parent in zip(labels, parents, strict=True) if label == parent})
    kept = [name for name in kept if SEPARATOR in name]
    if not split and not kept:
        return None
    if split and kept:
        return (
            f"Task names under {_listed(split)} were split at '/' into their subtasks, as each "
            f"of these tasks has {MIN_CHILDREN_PER_PARENT} subjects or more; {_listed(kept)} "
            "were kept whole, as they read as dataset names (such as openai/gsm8k). Set "
            "columns.task_hierarchy to false to keep every name whole, or to true to split them all."
        )
    if split:
        return (
            f"Task names were split at '/' into {len(set(parents))} task(s) and their subtasks, "
            "as they read as a task's subjects; set columns.task_hierarchy to false to keep "
            "them whole."
        )
    return (
        "Task names holding '/' were kept whole, as they read as dataset names (such as "
        "openai/gsm8k), not a task's subjects; set columns.task_hierarchy to true to split them."
    )


def _listed(names: list[str], shown: int = 3) -> str:
    """A few names for a warning: ``'a', 'b', 'c' and 2 more``."""
    quoted = ", ".join(f"'{name}'" for name in names[:shown])
    return quoted + (f" and {len(names) - shown} more" if len(names) > shown else "")
