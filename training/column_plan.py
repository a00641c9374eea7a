"""Which columns of an upload hold the prompt and each model's score and cost (``ColumnPlan``),
found by their names or mapped by ``columns``, or what is wrong with them.

Split from ``training.ingest`` (which reads the rows); preference files use the same rules
(``training.preferences``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from training.dataset_files import (
    CONTROL_CHARACTERS,
    DatasetInvalidError,
    Limits,
    error_item,
)
from training.task_columns import task_columns_plan

MAX_MODEL_ID = 200  # what a usage record or a router's candidate list holds
PROMPT_COLUMNS = ("prompt", "messages")


@dataclass
class ColumnPlan:
    prompt: str
    scores: dict[str, str]  # model id -> column
    costs: dict[str, str]
    task: str | None = None  # the column naming each row's task
    subtask: str | None = None  # the column naming each row's subtask within its task
    task_hierarchy: bool | None = None  # task names split at "/" (None: when they read so)


def plan_columns(frame: pd.DataFrame, columns: dict[str, Any] | None, limits: Limits) -> ColumnPlan:
    """Which column holds the prompt and which hold each model's score and cost."""
    names = [str(c) for c in frame.columns]
    shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
    columns = columns or {}
    prompt = columns.get("prompt") or next((c for c in PROMPT_COLUMNS if c in names), None)
    task, subtask, task_errors = task_columns_plan(frame, columns, shown)
    scores, costs = model_columns(columns, names)
    errors = [
        *_prompt_errors(prompt, names, shown),
        *task_errors,
        *_mapping_errors(scores, costs, names),
        *_model_errors(scores, shown, limits),
    ]
    if errors:
        raise DatasetInvalidError(errors)
    assert prompt is not None
    hierarchy = columns.get("task_hierarchy")
    return ColumnPlan(prompt, scores, costs, task=task, subtask=subtask, task_hierarchy=hierarchy)


def model_columns(
    columns: dict[str, Any], names: list[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(model → score column, model → cost column): mapped, or found by their names."""
    if "scores" in columns:
        scores = {str(m): str(c) for m, c in dict(columns["scores"]).items()}
        costs = {str(m): str(c) for m, c in dict(columns.get("costs") or {}).items()}
    else:
        scores = {n[: -len("/score")]: n for n in names if n.endswith("/score") and len(n) > 6}
        costs = {m: f"{m}/cost" for m in scores if f"{m}/cost" in names}
    return scores, costs


def _prompt_errors(prompt: str | None, names: list[str], shown: str) -> list[dict[str, Any]]:
    if prompt is None:
        return [
            error_item(
                "No prompt column: name it 'prompt' (text) or 'messages' (OpenAI messages JSON), "
                f"or set columns.prompt. Columns found: {shown}",
                column="prompt",
            )
        ]
    if prompt not in names:
        return [
            error_item(
                f"columns.prompt names '{prompt}', which is not in the file. Columns found: {shown}",
                column=prompt,
            )
        ]
    return []


def _mapping_errors(
    scores: dict[str, str], costs: dict[str, str], names: list[str]
) -> list[dict[str, Any]]:
    errors = [
        error_item(f"Column '{column}' named in columns is not in the file.", column=column)
        for column in [*scores.values(), *costs.values()]
        if column not in names
    ]
    for model in costs:
        if model not in scores:
            errors.append(
                error_item(
                    f"columns.costs names model '{model}', which has no score column.",
                    column=costs[model],
                )
            )
    if costs and set(costs) != set(scores):
        missing = ", ".join(sorted(set(scores) - set(costs)))
        errors.append(
            error_item(f"Give a cost column for every model or for none; missing for: {missing}.")
        )
    return errors


def _model_errors(scores: dict[str, str], shown: str, limits: Limits) -> list[dict[str, Any]]:
    errors = []
    if not scores:
        errors.append(
            error_item(
                "No score columns: name them '<model-id>/score' (e.g. 'openai/gpt-4o/score') or "
                f"map them with columns.scores. Columns found: {shown}"
            )
        )
    elif len(scores) < 2:
        errors.append(
            error_item(
                f"Only one model ({next(iter(scores))}) has scores; a router chooses between at "
                "least 2 models, so add another model's score column."
            )
        )
    elif len(scores) > limits.max_models:
        errors.append(
            error_item(f"The file has {len(scores)} models; the limit is {limits.max_models}.")
        )
    for model, column in scores.items():
        if CONTROL_CHARACTERS.search(model) or len(model) > MAX_MODEL_ID:
            errors.append(
                error_item(
                    f"Model id '{model[:MAX_MODEL_ID]}' is not usable: a model id has at most "
                    f"{MAX_MODEL_ID} characters and no control characters; rename the column.",
                    column=column,
                )
            )
    return errors
