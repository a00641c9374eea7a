"""Read an uploaded evaluation file into prompts, per-model scores and costs, or say what is wrong.

Only pandas' CSV/JSON readers and pyarrow's Parquet reader ever touch the bytes: nothing is
unpickled or executed. The format is sniffed from the content (a pickle renamed ``.csv`` is
refused by its magic bytes). Errors are ``{row, column, message}`` a person can act on; rows are
numbered from 1 (the first data row), ``row`` is null for file- or column-level problems.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.conf import settings

from training.cells import parse_number, prompt_text

MAX_ERRORS = 100
MAX_MODEL_ID = 200  # what a usage record or a router's candidate list holds
PROMPT_COLUMNS = ("prompt", "messages")
# A column naming each row's task (RouterBench's ``eval_name``): the report slices by it.
TASK_COLUMNS = ("eval_name", "task")
MAX_TASK_CHARS = 100  # longer task names are cut: they label report slices
CSV_CHUNK_ROWS = 10_000
PARQUET_BATCH_ROWS = 4096


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_rows: int
    max_models: int
    max_cell_chars: int
    min_rows: int
    max_columns: int
    max_header_bytes: int
    max_decoded_bytes: int  # a Parquet file's data once decompressed and decoded

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_bytes=int(settings.DATASET_MAX_BYTES),
            max_rows=int(settings.DATASET_MAX_ROWS),
            max_models=int(settings.DATASET_MAX_MODELS),
            max_cell_chars=int(settings.DATASET_MAX_CELL_CHARS),
            min_rows=int(settings.DATASET_MIN_ROWS),
            max_columns=int(settings.DATASET_MAX_COLUMNS),
            max_header_bytes=int(settings.DATASET_MAX_HEADER_BYTES),
            max_decoded_bytes=int(settings.DATASET_MAX_DECODED_BYTES),
        )


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


class DatasetInvalidError(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid dataset")
        self.errors = errors[:MAX_ERRORS]


def human_bytes(size: int) -> str:
    """``1.5 MB``-style sizes for messages."""
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x00``): an error message quotes
    what the file holds, and PostgreSQL cannot store a NUL in text or JSON."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _error(message: str, row: int | None = None, column: str | None = None) -> dict[str, Any]:
    return {
        "row": row,
        "column": None if column is None else printable(column),
        "message": printable(message),
    }


def _invalid(message: str, column: str | None = None) -> DatasetInvalidError:
    return DatasetInvalidError([_error(message, None, column)])


# --- reading bytes -----------------------------------------------------------------------------
def sniff_format(head: bytes) -> str:
    """``parquet``, ``jsonl`` or ``csv`` from the first bytes; raise for anything dangerous."""
    if head.startswith(b"PAR1"):
        return "parquet"
    if head[:1] == b"\x80" and head[1:2] in {b"\x02", b"\x03", b"\x04", b"\x05"}:
        raise _invalid(
            "This is a Python pickle, not CSV, JSONL or Parquet. RouterHub never loads pickles "
            "(they can run code); export the data with DataFrame.to_csv or to_parquet."
        )
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"\x93NUMPY", b"\xd0\xcf\x11\xe0")):
        raise _invalid(
            "This looks like a zip, gzip, NumPy or Excel file; upload plain CSV, JSONL or Parquet."
        )
    if b"\x00" in head[:4096] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _invalid("This is a binary file, not CSV, JSONL or Parquet.")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if stripped.startswith(b"{") else "csv"


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise _invalid(
            f"The file is not UTF-8: byte 0x{content[exc.start]:02x} on line {line} cannot be "
            "decoded. Save or export it as UTF-8 (for example 'CSV UTF-8' in a spreadsheet)."
        ) from exc


def read_frame(content: bytes, limits: Limits) -> tuple[str, pd.DataFrame]:
    """(format, DataFrame) from the file's bytes; raise ``DatasetInvalidError`` when unreadable.

    Columns, rows and sizes are checked from what the file declares (the CSV header line, each
    JSONL line's keys, the Parquet footer) before anything is decoded, and the rest is read in
    bounded chunks that stop as soon as a limit trips: a small file can never make the worker
    build a huge frame.
    """
    if len(content) > limits.max_bytes:
        raise _invalid(
            f"The file is {human_bytes(len(content))}; the limit is {human_bytes(limits.max_bytes)}."
        )
    if not content.strip():
        raise _invalid("The file is empty.")
    kind = sniff_format(content[:8192])
    try:
        if kind == "parquet":
            frame = _parquet_read(content, limits)
        elif kind == "jsonl":
            _jsonl_check(content, limits)
            frame = pd.read_json(io.StringIO(_decode(content)), lines=True, dtype=False)
        else:
            _csv_header_check(content, limits)
            frame = _csv_read(_decode(content), limits)
    except DatasetInvalidError:
        raise
    except (ValueError, pa.ArrowException, pd.errors.ParserError, OSError) as exc:
        raise _invalid(f"Could not read the file as {kind.upper()}: {exc}".strip()) from exc
    if len(frame) > limits.max_rows:
        raise _invalid(f"The file has {len(frame):,} rows; the limit is {limits.max_rows:,}.")
    return kind, frame


def _too_many_rows(limits: Limits) -> DatasetInvalidError:
    return _invalid(
        f"The file has more than {limits.max_rows:,} rows (the limit); split or sample it."
    )


def _too_many_columns(found: int, limits: Limits, what: str = "columns") -> DatasetInvalidError:
    return _invalid(
        f"The file has {found:,} {what}; the limit is {limits.max_columns:,} columns. Keep the "
        "prompt and the score and cost columns and drop the rest."
    )


def _csv_header_check(content: bytes, limits: Limits) -> None:
    """Refuse a header line over ``max_header_bytes`` or with too many columns, unparsed."""
    end = content.find(b"\n", 0, limits.max_header_bytes + 1)
    if end == -1 and len(content) > limits.max_header_bytes:
        full = content.find(b"\n")
        header = content if full == -1 else content[:full]
        raise _invalid(
            f"The header line is {human_bytes(len(header))} with about "
            f"{header.count(b',') + 1:,} columns; the limits are "
            f"{human_bytes(limits.max_header_bytes)} and {limits.max_columns:,} columns."
        )
    head = content[: len(content) if end == -1 else end + 1]
    text = head.decode("utf-8-sig", errors="replace")
    names = next(csv.reader(io.StringIO(text)), [])
    if len(names) > limits.max_columns:
        raise _too_many_columns(len(names), limits)


def _csv_read(text: str, limits: Limits) -> pd.DataFrame:
    options: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False}
    chunks, rows = [], 0
    with pd.read_csv(io.StringIO(text), chunksize=CSV_CHUNK_ROWS, **options) as reader:
        for chunk in reader:
            rows += len(chunk)
            if rows > limits.max_rows:
                raise _too_many_rows(limits)
            chunks.append(chunk)
    if not chunks:  # a header without rows
        return pd.read_csv(io.StringIO(text), nrows=0, **options)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _jsonl_check(content: bytes, limits: Limits) -> None:
    """Count rows and distinct keys line by line, before pandas builds anything."""
    keys: set[str] = set()
    rows = 0
    for number, line in enumerate(io.BytesIO(content), start=1):
        if not line.strip():
            continue
        rows += 1
        if rows > limits.max_rows:
            raise _too_many_rows(limits)
        try:
            record = json.loads(line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line)
        except ValueError:
            return  # pandas reports the broken line as before
        if isinstance(record, dict):
            keys.update(record)
            if len(keys) > limits.max_columns:
                raise _too_many_columns(
                    len(keys), limits, f"distinct keys by line {number} (each key is a column)"
                )


def _parquet_read(content: bytes, limits: Limits) -> pd.DataFrame:
    """Check the footer's row count, column count and decompressed size, then decode in batches
    that stop when the decoded data passes ``max_decoded_bytes``."""
    parquet = pq.ParquetFile(io.BytesIO(content))
    meta = parquet.metadata
    if meta.num_rows > limits.max_rows:
        raise _invalid(
            f"The file declares {meta.num_rows:,} rows; the limit is {limits.max_rows:,}."
        )
    if meta.num_columns > limits.max_columns:
        raise _too_many_columns(meta.num_columns, limits)
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if declared > limits.max_decoded_bytes:
        raise _invalid(
            f"The file's data is {human_bytes(declared)} once decompressed "
            f"({human_bytes(len(content))} compressed); the limit is "
            f"{human_bytes(limits.max_decoded_bytes)}."
        )
    batches, decoded = [], 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        decoded += batch.nbytes
        if decoded > limits.max_decoded_bytes:
            raise _invalid(
                f"The file's data decodes to more than {human_bytes(limits.max_decoded_bytes)} "
                f"(the limit; {human_bytes(len(content))} compressed)."
            )
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    return table.to_pandas()


# --- columns -------------------------------------------------------------------------------------
@dataclass
class ColumnPlan:
    prompt: str
    scores: dict[str, str]  # model id -> column
    costs: dict[str, str]
    task: str | None = None  # the column naming each row's task


def plan_columns(frame: pd.DataFrame, columns: dict[str, Any] | None, limits: Limits) -> ColumnPlan:
    """Which column holds the prompt and which hold each model's score and cost."""
    names = [str(c) for c in frame.columns]
    shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
    columns = columns or {}
    prompt = columns.get("prompt") or next((c for c in PROMPT_COLUMNS if c in names), None)
    errors = []
    if prompt is None:
        errors.append(
            _error(
                "No prompt column: name it 'prompt' (text) or 'messages' (OpenAI messages JSON), "
                f"or set columns.prompt. Columns found: {shown}",
                column="prompt",
            )
        )
    elif prompt not in names:
        errors.append(
            _error(
                f"columns.prompt names '{prompt}', which is not in the file. Columns found: {shown}",
                column=prompt,
            )
        )
    task = columns.get("task") or next((c for c in TASK_COLUMNS if c in names), None)
    if task is not None and task not in names:
        errors.append(
            _error(
                f"columns.task names '{task}', which is not in the file. Columns found: {shown}",
                column=task,
            )
        )
    if "scores" in columns:
        scores = {str(m): str(c) for m, c in dict(columns["scores"]).items()}
        costs = {str(m): str(c) for m, c in dict(columns.get("costs") or {}).items()}
    else:
        scores = {n[: -len("/score")]: n for n in names if n.endswith("/score") and len(n) > 6}
        costs = {m: f"{m}/cost" for m in scores if f"{m}/cost" in names}
    for column in [*scores.values(), *costs.values()]:
        if column not in names:
            errors.append(
                _error(f"Column '{column}' named in columns is not in the file.", column=column)
            )
    for model in costs:
        if model not in scores:
            errors.append(
                _error(
                    f"columns.costs names model '{model}', which has no score column.",
                    column=costs[model],
                )
            )
    if costs and set(costs) != set(scores):
        missing = ", ".join(sorted(set(scores) - set(costs)))
        errors.append(
            _error(f"Give a cost column for every model or for none; missing for: {missing}.")
        )
    if not scores:
        errors.append(
            _error(
                "No score columns: name them '<model-id>/score' (e.g. 'openai/gpt-4o/score') or "
                f"map them with columns.scores. Columns found: {shown}"
            )
        )
    elif len(scores) < 2:
        errors.append(
            _error(
                f"Only one model ({next(iter(scores))}) has scores; a router chooses between at "
                "least 2 models, so add another model's score column."
            )
        )
    elif len(scores) > limits.max_models:
        errors.append(
            _error(f"The file has {len(scores)} models; the limit is {limits.max_models}.")
        )
    for model, column in scores.items():
        if _CONTROL.search(model) or len(model) > MAX_MODEL_ID:
            errors.append(
                _error(
                    f"Model id '{model[:MAX_MODEL_ID]}' is not usable: a model id has at most "
                    f"{MAX_MODEL_ID} characters and no control characters; rename the column.",
                    column=column,
                )
            )
    if errors:
        raise DatasetInvalidError(errors)
    assert prompt is not None
    return ColumnPlan(prompt=prompt, scores=scores, costs=costs, task=task)


def dataset_parse(
    content: bytes,
    *,
    columns: dict[str, Any] | None = None,
    limits: Limits | None = None,
) -> ParsedDataset:
    """Parse and validate an uploaded file; raise ``DatasetInvalidError`` with row/column errors."""
    limits = limits or Limits.from_settings()
    _, frame = read_frame(content, limits)
    plan = plan_columns(frame, columns, limits)
    models = list(plan.scores)
    n = len(frame)
    errors: list[dict[str, Any]] = []

    def add(message: str, row: int, column: str) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(_error(message, row, column))

    prompts: list[str] = []
    for i, value in enumerate(frame[plan.prompt].tolist()):
        try:
            text = prompt_text(value, plan.prompt)
        except (ValueError, TypeError) as exc:
            add(f"Row {i + 1}: the prompt cannot be read ({exc}).", i + 1, plan.prompt)
            text = ""
        if len(text) > limits.max_cell_chars:
            add(
                f"Row {i + 1}: the prompt has {len(text):,} characters; the limit is "
                f"{limits.max_cell_chars:,}.",
                i + 1,
                plan.prompt,
            )
            text = ""
        prompts.append(text)

    scores = _parse_matrix(frame, plan.scores, models, True, add)
    costs = _parse_matrix(frame, plan.costs, models, False, add) if plan.costs else None
    if costs is not None and np.any(costs < 0):
        i, j = np.argwhere(costs < 0)[0]
        add(f"Row {i + 1}: costs cannot be negative.", int(i) + 1, plan.costs[models[j]])
    for j, model in enumerate(models):
        if n and np.all(np.isnan(scores[:, j])):
            errors.append(
                _error(f"Model '{model}' has no scores at all.", None, plan.scores[model])
            )
    if errors:
        raise DatasetInvalidError(errors)
    parsed = _clean(prompts, models, scores, costs, n, limits)
    if plan.task is not None:
        # _clean keeps the first row of each distinct non-empty prompt, in order.
        first: dict[str, str] = {}
        for text, name in zip(prompts, _task_names(frame[plan.task].tolist()), strict=True):
            first.setdefault(text, name)
        parsed.tasks = [first[text] for text in parsed.prompts]
    return parsed


def _task_names(values: list[Any]) -> list[str]:
    """Each row's task as a short printable label; an empty cell is the task "(none)"."""
    names = []
    for value in values:
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        text = printable(text.strip())[:MAX_TASK_CHARS]
        names.append(text or "(none)")
    return names


def _parse_matrix(
    frame: pd.DataFrame,
    mapping: dict[str, str],
    models: list[str],
    is_score: bool,
    add: Any,
) -> np.ndarray:
    matrix = np.full((len(frame), len(models)), np.nan)
    what = "score" if is_score else "cost"
    hint = "use true/false, 0/1 or a number" if is_score else "use a number of USD"
    for j, model in enumerate(models):
        column = mapping[model]
        for i, value in enumerate(frame[column].tolist()):
            try:
                number = parse_number(value, allow_bool=is_score)
            except (ValueError, TypeError):
                shown = str(value)
                shown = shown if len(shown) <= 40 else shown[:40] + "…"
                add(f"Row {i + 1}: {shown!r} is not a {what} ({hint}).", i + 1, column)
                continue
            if number is not None:
                matrix[i, j] = number
    return matrix


def _clean(
    prompts: list[str],
    models: list[str],
    scores: np.ndarray,
    costs: np.ndarray | None,
    n: int,
    limits: Limits,
) -> ParsedDataset:
    """Drop empty and duplicate prompts, fill empty cells, and check there is enough left."""
    warnings: list[str] = []
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
    rows = np.asarray(keep, dtype=np.int64)
    scores = scores[rows]
    costs = costs[rows] if costs is not None else None
    if len(rows) < limits.min_rows:
        raise _invalid(
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
            column[np.isnan(column)] = observed.min()
            warnings.append(
                f"{gaps} empty score cell(s) for '{model}' counted as its worst score "
                f"({observed.min():g})."
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
        tasks=[str(t) for t in frame["task"].tolist()] if "task" in frame.columns else None,
    )
