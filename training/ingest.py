"""Read an uploaded evaluation file into prompts, per-model scores and costs, or say what is wrong.

Only pandas' CSV/JSON readers and pyarrow's Parquet reader ever touch the bytes: nothing is
unpickled or executed. The format is sniffed from the content (a pickle renamed ``.csv`` is
refused by its magic bytes). Errors are ``{row, column, message}`` a person can act on; rows are
numbered from 1 (the first data row), ``row`` is null for file- or column-level problems.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.cells import AmbiguousNumberError, parse_number, prompt_text
from training.column_plan import MAX_MODEL_ID, PROMPT_COLUMNS, ColumnPlan, plan_columns
from training.dataset_files import (
    MAX_ERRORS,
    DatasetInvalidError,
    Limits,
    error_item,
    human_bytes,
    invalid,
    read_frame,
    sniff_format,
)
from training.task_columns import row_tasks, task_hierarchy_note

__all__ = [
    "MAX_ERRORS",
    "MAX_MODEL_ID",
    "PROMPT_COLUMNS",
    "DatasetInvalidError",
    "Limits",
    "ParsedDataset",
    "dataset_parse",
    "human_bytes",
    "normalized_from_parquet",
    "normalized_to_parquet",
    "sniff_format",
]

# Largest score or cost magnitude: the learner's stored heads are float32 (max ~3.4e38), and a
# score near 1e300 became inf there, then a 500 in select.
MAX_MAGNITUDE = 1e15


@dataclass
class ParsedDataset:
    """A valid dataset: raw scores (dataset units) without gaps, costs in USD per request."""

    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n, m)
    costs: np.ndarray | None  # (n, m) or None when the file has no cost columns
    binary: list[bool]
    warnings: list[str] = field(default_factory=list)
    empty_cells: dict[str, int] = field(default_factory=dict)
    tasks: list[str] | None = None  # each row's task when the file names one (report slices)
    # each row's parent task (``task_labels.py``); None: labels split at their first "/" (a
    # dataset stored before the hierarchy was decided at ingest)
    task_parents: list[str] | None = None

    def summary(self) -> list[dict[str, Any]]:
        means = self.scores.mean(axis=0)
        cost_means = self.costs.mean(axis=0) if self.costs is not None else None
        return [
            {
                "id": model,
                "mean_score": round(float(means[j]), 6),
                "mean_cost": None if cost_means is None else float(f"{cost_means[j]:.10g}"),
                "binary": self.binary[j],
                "empty_cells": self.empty_cells.get(model, 0),
            }
            for j, model in enumerate(self.models)
        ]


def dataset_parse(
    content: bytes,
    *,
    columns: dict[str, Any] | None = None,
    limits: Limits | None = None,
    maximize: bool = True,
) -> ParsedDataset:
    """Parse and validate an uploaded file; raise ``DatasetInvalidError`` with row/column errors.

    ``maximize`` is the dataset's direction: an empty score cell counts as the model's worst
    observed score, its lowest when higher is better and its highest when lower is.
    """
    limits = limits or Limits.from_settings()
    _, frame, separator = read_frame(content, limits)
    from training.preferences import is_preference_frame, preference_dataset_parse

    if is_preference_frame(frame):
        return preference_dataset_parse(frame, columns, limits, decimal_comma=separator == ";")
    plan = plan_columns(frame, columns, limits)
    models = list(plan.scores)
    n = len(frame)
    errors: list[dict[str, Any]] = []

    def add(message: str, row: int, column: str) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(error_item(message, row, column))

    prompts = _read_prompts(frame, plan.prompt, limits, add)
    comma = separator == ";"  # a European locale's export: "0,75" is 0.75
    scores = _parse_matrix(frame, plan.scores, models, True, add, comma)
    costs = _parse_matrix(frame, plan.costs, models, False, add, comma) if plan.costs else None
    if costs is not None and np.any(costs < 0):
        i, j = np.argwhere(costs < 0)[0]
        add(f"Row {i + 1}: costs cannot be negative.", int(i) + 1, plan.costs[models[j]])
    for j, model in enumerate(models):
        if n and np.all(np.isnan(scores[:, j])):
            errors.append(
                error_item(f"Model '{model}' has no scores at all.", None, plan.scores[model])
            )
    if errors:
        raise DatasetInvalidError(errors)
    parsed = _clean(prompts, models, scores, costs, n, limits, maximize)
    if plan.task is not None:
        parsed.tasks, parsed.task_parents = _kept_tasks(frame, plan, prompts, parsed.prompts)
        automatic = plan.subtask is None and plan.task_hierarchy is None
        note = task_hierarchy_note(parsed.tasks, parsed.task_parents) if automatic else None
        parsed.warnings.extend([note] if note else [])
    return parsed


def _read_prompts(frame: pd.DataFrame, column: str, limits: Limits, add: Any) -> list[str]:
    """Each row's prompt text ("" where it cannot be read or is too long, with the error)."""
    prompts: list[str] = []
    for i, value in enumerate(frame[column].tolist()):
        try:
            text = prompt_text(value, column)
        except (ValueError, TypeError) as exc:
            add(f"Row {i + 1}: the prompt cannot be read ({exc}).", i + 1, column)
            text = ""
        if len(text) > limits.max_cell_chars:
            add(
                f"Row {i + 1}: the prompt has {len(text):,} characters; the limit is "
                f"{limits.max_cell_chars:,}.",
                i + 1,
                column,
            )
            text = ""
        prompts.append(text)
    return prompts


def _kept_tasks(
    frame: pd.DataFrame, plan: ColumnPlan, prompts: list[str], kept: list[str]
) -> tuple[list[str], list[str]]:
    """Each kept prompt's (task label, parent task): its first row's, as ``_clean`` keeps the
    first row of each distinct non-empty prompt, in order."""
    assert plan.task is not None
    labels, parents = row_tasks(frame, plan.task, plan.subtask, plan.task_hierarchy)
    first: dict[str, tuple[str, str]] = {}
    for text, label, parent in zip(prompts, labels, parents, strict=True):
        first.setdefault(text, (label, parent))
    return [first[text][0] for text in kept], [first[text][1] for text in kept]


def _parse_matrix(
    frame: pd.DataFrame,
    mapping: dict[str, str],
    models: list[str],
    is_score: bool,
    add: Any,
    decimal_comma: bool = False,
) -> np.ndarray:
    matrix = np.full((len(frame), len(models)), np.nan)
    what = "score" if is_score else "cost"
    hint = (
        "use true/false, 0/1 or a number; leave the cell empty where the model has no score, "
        "which counts as its worst"
        if is_score
        else "use a number of USD; leave the cell empty where it is unknown, which counts as "
        "the model's mean cost"
    )
    for j, model in enumerate(models):
        column = mapping[model]
        for i, value in enumerate(frame[column].tolist()):
            try:
                number = parse_number(value, allow_bool=is_score, decimal_comma=decimal_comma)
            except (ValueError, TypeError) as exc:
                shown = str(value)
                shown = shown if len(shown) <= 40 else shown[:40] + "…"
                why = (
                    str(exc)
                    if isinstance(exc, AmbiguousNumberError)
                    else f"is not a {what} ({hint})"
                )
                add(f"Row {i + 1}: {shown!r} {why}.", i + 1, column)
                continue
            if number is not None and abs(number) > MAX_MAGNITUDE:
                add(
                    f"Row {i + 1}: the {what} {number:g} is beyond ±{MAX_MAGNITUDE:g}; rescale "
                    f"the column (scores to 0–1 or 0–100, costs to USD per request).",
                    i + 1,
                    column,
                )
            elif number is not None:
                matrix[i, j] = number
    return matrix


def _usable_rows(prompts: list[str], warnings: list[str]) -> list[int]:
    """Indices of the rows whose prompt is neither empty nor a repeat; says what was dropped."""
    keep, seen = [], set()
    empty = duplicates = 0
    for i, text in enumerate(prompts):
        if not text.strip():
            empty += 1
        elif text in seen:
            duplicates += 1
        else:
            seen.add(text)
            keep.append(i)
    if empty:
        warnings.append(f"Dropped {empty} row(s) with an empty prompt.")
    if duplicates:
        warnings.append(f"Dropped {duplicates} duplicate prompt(s), keeping the first of each.")
    return keep


def _clean(
    prompts: list[str],
    models: list[str],
    scores: np.ndarray,
    costs: np.ndarray | None,
    n: int,
    limits: Limits,
    maximize: bool = True,
) -> ParsedDataset:
    """Drop empty and duplicate prompts, fill empty cells, and check there is enough left."""
    warnings: list[str] = []
    keep = _usable_rows(prompts, warnings)
    rows = np.asarray(keep, dtype=np.int64)
    scores = scores[rows]
    costs = costs[rows] if costs is not None else None
    if len(rows) < limits.min_rows:
        raise invalid(
            f"Only {len(rows)} usable row(s) out of {n}; training needs at least "
            f"{limits.min_rows} rows with a prompt and scores."
        )
    binary = []
    empty_cells: dict[str, int] = {}
    for j, model in enumerate(models):
        column = scores[:, j]
        observed = column[~np.isnan(column)]
        is_binary = bool(np.all(np.isin(observed, (0.0, 1.0))))
        binary.append(is_binary)
        gaps = int(np.isnan(column).sum())
        if gaps:
            empty_cells[model] = gaps
            # An empty score is a failed answer (RouterBench's convention): the worst observed.
            worst = float(observed.min() if maximize else observed.max())
            column[np.isnan(column)] = worst
            warnings.append(
                f"{gaps} empty score cell(s) for '{model}' counted as its worst score ({worst:g})."
            )
        if costs is not None:
            cost_column = costs[:, j]
            cost_gaps = int(np.isnan(cost_column).sum())
            if cost_gaps:
                filler = float(np.nanmean(cost_column)) if cost_gaps < len(cost_column) else 0.0
                cost_column[np.isnan(cost_column)] = filler
                warnings.append(
                    f"{cost_gaps} empty cost cell(s) for '{model}' set to its mean cost."
                )
    return ParsedDataset(
        prompts=[prompts[i] for i in keep],
        models=models,
        scores=scores,
        costs=costs,
        binary=binary,
        warnings=warnings,
        empty_cells=empty_cells,
    )


# --- the normalised artifact (Parquet, read back for training) -------------------------------------
def normalized_to_parquet(parsed: ParsedDataset) -> bytes:
    data: dict[str, Any] = {"prompt": parsed.prompts}
    if parsed.tasks is not None:
        data["task"] = parsed.tasks
    if parsed.task_parents is not None:
        data["task_parent"] = parsed.task_parents
    for j in range(len(parsed.models)):
        data[f"score_{j}"] = parsed.scores[:, j]
        if parsed.costs is not None:
            data[f"cost_{j}"] = parsed.costs[:, j]
    buffer = io.BytesIO()
    pd.DataFrame(data).to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def normalized_from_parquet(content: bytes, models: list[str], binary: list[bool]) -> ParsedDataset:
    frame = pd.read_parquet(io.BytesIO(content), engine="pyarrow")
    m = len(models)
    scores = np.column_stack([frame[f"score_{j}"].to_numpy(np.float64) for j in range(m)])
    has_costs = "cost_0" in frame.columns
    costs = (
        np.column_stack([frame[f"cost_{j}"].to_numpy(np.float64) for j in range(m)])
        if has_costs
        else None
    )
    return ParsedDataset(
        prompts=[str(p) for p in frame["prompt"].tolist()],
        models=list(models),
        scores=scores,
        costs=costs,
        binary=list(binary),
        tasks=_text_column(frame, "task"),
        task_parents=_text_column(frame, "task_parent"),
    )


def _text_column(frame: pd.DataFrame, name: str) -> list[str] | None:
    return [str(v) for v in frame[name].tolist()] if name in frame.columns else None
