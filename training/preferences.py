"""Preference datasets (Chatbot Arena battles) become per-prompt expected scores.

A battle row is ``prompt, model_a, model_b, winner`` with ``winner`` one of ``model_a``,
``model_b``, ``tie`` or ``tie (bothbad)`` (either model's own id is accepted too). A file may mix
battles with score rows (``<model>/score`` columns, the winner left empty): each score row adds
one comparison per pair of models it scores (the higher score wins, equal scores tie).

Training data for routers is a score per prompt and model, so the comparisons are turned into
one with a Bradley-Terry model over prompt features: a pairwise logistic regression on feature
differences learns a strength ``s(x, m) = w_m . phi(x)`` per model (``phi`` the featurizer's dense
prompt features, standardised, plus a constant), with ``P(a beats b | x) = sigmoid(s(x,a) - s(x,b))``;
ties, both-bad ties included, are half a win for each side. A prompt's score for a model is its
predicted win probability against the field, ``mean_k sigmoid(s(x,m) - s(x,k))`` in 0..1, known for
every model on every prompt, so the usual trainer (LightGBM score heads), ``select`` and the
report apply unchanged.

The fit is ``training.bradley_terry``'s, bounded like other validation (``MAX_COMPARISONS``,
``MAX_ITERATIONS``) and inside the validation memory ceiling. The file is read by the same
``columns`` options as a score file (prompt, scores, task, subtask, task_hierarchy; a task column
is found by its name as there) and the same decimal commas in a semicolon file; ``columns.costs``
is refused (its scores are win rates; costs come from a run's ``options.prices``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from training import ingest
from training.arena_layouts import battles_frame, is_arena_frame
from training.bradley_terry import field_win_rates, strengths_fit
from training.cells import AmbiguousNumberError, is_empty, parse_number, prompt_text
from training.column_plan import model_columns
from training.dataset_files import printable
from training.task_columns import row_tasks, task_columns_plan, task_hierarchy_note

WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}

AddError = Callable[[str, int | None, str | None], None]


def _error(message: str, row: int | None, column: str | None) -> dict[str, Any]:
    """An error in ingest's ``{row, column, message}`` shape."""
    shown = None if column is None else printable(column)
    return {"row": row, "column": shown, "message": printable(message)}


def is_preference_frame(frame: pd.DataFrame) -> bool:
    """Whether the file holds battles: ``model_a``, ``model_b`` and ``winner`` (or the 55k
    file's one-hot outcome columns, ``training.arena_layouts``)."""
    return is_arena_frame({str(c) for c in frame.columns})


@dataclass
class Comparisons:
    """Pairwise outcomes over unique prompts: ``outcome`` is 1 when ``a`` won, 0.5 a tie."""

    prompts: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt_index: list[int] = field(default_factory=list)
    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)
    outcome: list[float] = field(default_factory=list)
    first_rows: list[int] = field(default_factory=list)  # each prompt's first row (from 0)
    battles: int = 0
    ties: int = 0
    empty_prompts: int = 0
    _prompt_ids: dict[str, int] = field(default_factory=dict)
    _model_ids: dict[str, int] = field(default_factory=dict)

    def prompt_id(self, text: str, row: int) -> int:
        """The prompt's index, added with ``row`` (numbered from 1) as its first row if new."""
        if text not in self._prompt_ids:
            self._prompt_ids[text] = len(self.prompts)
            self.prompts.append(text)
            self.first_rows.append(row - 1)
        return self._prompt_ids[text]

    def model_id(self, model: str) -> int:
        if model not in self._model_ids:
            self._model_ids[model] = len(self.models)
            self.models.append(model)
        return self._model_ids[model]

    def add(self, prompt: int, a: int, b: int, outcome: float) -> None:
        self.prompt_index.append(prompt)
        self.a.append(a)
        self.b.append(b)
        self.outcome.append(outcome)


def winner_outcome(winner: Any, model_a: str, model_b: str) -> float | None:
    """1 / 0 / 0.5 for a battle's winner cell, ``None`` when it is not a known outcome."""
    text = str(winner).strip()
    if text in WINNERS:
        return WINNERS[text]
    if text == model_a:
        return 1.0
    if text == model_b:
        return 0.0
    return None


def _model_cell(value: Any, row: int, column: str, add: AddError, max_id: int) -> str | None:
    if is_empty(value):
        add(f"Row {row}: {column} is empty; name the model that answered.", row, column)
        return None
    text = str(value).strip()
    if len(text) > max_id or any(ord(c) < 32 for c in text):
        add(
            f"Row {row}: model id '{text[:max_id]}' is not usable (at most {max_id} characters, "
            "no control characters).",
            row,
            column,
        )
        return None
    return text


def battle_add(
    found: Comparisons,
    prompt: str,
    record: dict[str, Any],
    row: int,
    add: AddError,
    max_id: int,
) -> None:
    """Add one battle row's comparison, or report what is wrong with it."""
    model_a = _model_cell(record["model_a"], row, "model_a", add, max_id)
    model_b = _model_cell(record["model_b"], row, "model_b", add, max_id)
    if model_a is None or model_b is None:
        return
    if model_a == model_b:
        add(
            f"Row {row}: model_a and model_b are both '{model_a}'; a battle needs two models.",
            row,
            "model_b",
        )
        return
    outcome = winner_outcome(record["winner"], model_a, model_b)
    if outcome is None:
        shown = str(record["winner"])[:40]
        add(
            f"Row {row}: winner '{shown}' is not one of model_a, model_b, tie, tie (bothbad) "
            "(Chatbot Arena's values) or one of the two models' ids.",
            row,
            "winner",
        )
        return
    if not prompt.strip():
        found.empty_prompts += 1
        return
    found.battles += 1
    found.ties += outcome == 0.5
    index = found.prompt_id(prompt, row)
    found.add(index, found.model_id(model_a), found.model_id(model_b), outcome)


def score_row_add(found: Comparisons, prompt: str, scores: dict[str, float], row: int) -> None:
    """One comparison per pair of models a score row scores: the higher score wins."""
    if not prompt.strip():
        found.empty_prompts += 1
        return
    if len(scores) < 2:
        return
    index = found.prompt_id(prompt, row)
    items = [(found.model_id(m), s) for m, s in scores.items()]
    for i, (a, score_a) in enumerate(items):
        for b, score_b in items[i + 1 :]:
            found.add(index, a, b, 1.0 if score_a > score_b else 0.0 if score_a < score_b else 0.5)


def frame_comparisons(
    frame: pd.DataFrame,
    prompt_column: str,
    score_columns: dict[str, str],
    add: AddError,
    max_cell_chars: int,
    max_id: int,
    decimal_comma: bool = False,
) -> Comparisons:
    """Every battle and score row of the file as comparisons; errors go to ``add``
    (``decimal_comma``: a semicolon file's ``0,75`` is 0.75, as in score files)."""
    found = Comparisons()
    records = frame.to_dict("records")
    for row, record in enumerate(records, start=1):
        try:
            prompt = prompt_text(record[prompt_column], prompt_column)
        except (ValueError, TypeError) as exc:
            add(f"Row {row}: the prompt cannot be read ({exc}).", row, prompt_column)
            continue
        if len(prompt) > max_cell_chars:
            add(
                f"Row {row}: the prompt has {len(prompt):,} characters; the limit is "
                f"{max_cell_chars:,}.",
                row,
                prompt_column,
            )
            continue
        if not is_empty(record["winner"]):
            battle_add(found, prompt, record, row, add, max_id)
            continue
        scores: dict[str, float] = {}
        for model, column in score_columns.items():
            try:
                value = parse_number(record[column], allow_bool=True, decimal_comma=decimal_comma)
            except AmbiguousNumberError as exc:
                add(f"Row {row}: {str(record[column])[:40]!r} {exc}.", row, column)
                continue
            except (ValueError, TypeError):
                add(f"Row {row}: {str(record[column])[:40]!r} is not a score.", row, column)
                continue
            if value is not None:
                scores[model] = value
        if not scores and not score_columns:
            add(f"Row {row}: winner is empty; give model_a, model_b or tie.", row, "winner")
        score_row_add(found, prompt, scores, row)
    return found


@dataclass
class _Plan:
    """The columns a battles file is read by: as a score file's (``column_plan``,
    ``task_columns``), without cost columns."""

    prompt: str
    scores: dict[str, str]
    task: str | None
    subtask: str | None
    hierarchy: bool | None


def _plan(frame: pd.DataFrame, columns: dict[str, Any]) -> _Plan:
    names = [str(c) for c in frame.columns]
    shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
    prompt = columns.get("prompt") or next((c for c in ingest.PROMPT_COLUMNS if c in names), None)
    errors: list[dict[str, Any]] = []
    if prompt is None or prompt not in names:
        message = (
            "No prompt column: a battles file needs 'prompt' (or 'messages', or "
            "'conversation_a'), 'model_a', 'model_b' and 'winner' columns, or set columns.prompt."
        )
        errors.append(_error(message, None, "prompt"))
    if "costs" in columns:
        message = (
            "columns.costs is not read in a battles file: its scores are win rates learned from "
            "the comparisons, and a run's costs then come from options.prices (or each model's "
            "rank). Leave columns.costs out."
        )
        errors.append(_error(message, None, None))
    task, subtask, task_errors = task_columns_plan(frame, columns, shown)
    errors.extend(task_errors)
    mapped = {"scores": columns["scores"]} if "scores" in columns else {}
    scores, _ = model_columns(mapped, names)
    for column in scores.values():
        if column not in names:
            message = f"Column '{column}' named in columns.scores is not in the file."
            errors.append(_error(message, None, column))
    if errors:
        raise ingest.DatasetInvalidError(errors)
    assert prompt is not None
    return _Plan(prompt, scores, task, subtask, columns.get("task_hierarchy"))


def _unread_costs(frame: pd.DataFrame, plan: _Plan) -> list[str]:
    """A warning naming the ``<model>/cost`` columns a battles file has and does not read."""
    unread = [f"{m}/cost" for m in plan.scores if f"{m}/cost" in frame.columns]
    if not unread:
        return []
    shown = ", ".join(unread[:3]) + (" …" if len(unread) > 3 else "")
    return [
        f"Cost columns are not read in a battles file ({shown}); give the run options.prices "
        "for costs in USD."
    ]


def _with_tasks(
    parsed: ingest.ParsedDataset, frame: pd.DataFrame, plan: _Plan, rows: list[int]
) -> None:
    """Each prompt's task and parent task from its first row, as a score file keeps them."""
    if plan.task is None:
        return
    labels, parents = row_tasks(frame, plan.task, plan.subtask, plan.hierarchy)
    parsed.tasks = [labels[r] for r in rows]
    parsed.task_parents = [parents[r] for r in rows]
    automatic = plan.subtask is None and plan.hierarchy is None
    note = task_hierarchy_note(parsed.tasks, parsed.task_parents) if automatic else None
    parsed.warnings.extend([note] if note else [])


def preference_dataset_parse(
    frame: pd.DataFrame,
    columns: dict[str, Any] | None,
    limits: ingest.Limits,
    decimal_comma: bool = False,
) -> ingest.ParsedDataset:
    """A battles (or battles plus scores) file as a ``ParsedDataset`` of expected win rates,
    read by the same ``columns`` options as a score file (``columns.costs`` refused) and the
    same decimal commas in a semicolon file. Chatbot Arena's other layouts are read as battles
    (``training.arena_layouts``)."""
    frame = battles_frame(frame, (columns or {}).get("prompt"))
    plan = _plan(frame, columns or {})
    errors: list[dict[str, Any]] = []

    def add(message: str, row: int | None, column: str | None) -> None:
        if len(errors) < ingest.MAX_ERRORS:
            errors.append(_error(message, row, column))

    found = frame_comparisons(
        frame,
        plan.prompt,
        plan.scores,
        add,
        limits.max_cell_chars,
        ingest.MAX_MODEL_ID,
        decimal_comma,
    )
    if not errors:
        _coverage_check(found, limits, add)
    if errors:
        raise ingest.DatasetInvalidError(errors)
    rates = field_win_rates(strengths_fit(found))
    m = len(found.models)
    parsed = ingest.ParsedDataset(
        prompts=found.prompts,
        models=found.models,
        scores=rates,
        costs=None,
        binary=[False] * m,
        warnings=[*_empty_warning(found), _summary(found), *_unread_costs(frame, plan)],
    )
    _with_tasks(parsed, frame, plan, found.first_rows)
    return parsed


def _summary(found: Comparisons) -> str:
    return (
        f"Preference data: {found.battles} battle(s) ({found.ties} tie(s)) and "
        f"{len(found.outcome) - found.battles} comparison(s) from score rows over "
        f"{len(found.prompts)} prompt(s). Scores are each model's predicted win rate "
        "against the others (Bradley-Terry over prompt features, 0..1, higher is better)."
    )


def _empty_warning(found: Comparisons) -> list[str]:
    if not found.empty_prompts:
        return []
    return [f"Dropped {found.empty_prompts} row(s) with an empty prompt."]


def _coverage_check(found: Comparisons, limits: ingest.Limits, add: AddError) -> None:
    if len(found.models) < 2:
        add(
            "The file compares fewer than 2 models; a router chooses between at least 2.",
            None,
            "model_a",
        )
    elif len(found.models) > limits.max_models:
        add(
            f"The file has {len(found.models)} models; the limit is {limits.max_models}.",
            None,
            "model_a",
        )
    if len(found.prompts) < limits.min_rows:
        add(
            f"Only {len(found.prompts)} distinct prompt(s) with a usable battle or score row; "
            f"training needs at least {limits.min_rows}.",
            None,
            None,
        )
