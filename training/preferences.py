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

Bounded like other validation: at most ``MAX_COMPARISONS`` comparisons (a deterministic sample
beyond that), ``MAX_ITERATIONS`` L-BFGS iterations over a sparse design of ``2·(d+1)`` non-zeros
per comparison, inside the validation memory ceiling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training import ingest
from training.arena_layouts import battles_frame, is_arena_frame
from training.cells import is_empty, parse_number, prompt_text
from training.dataset_files import printable
from training.task_columns import HIERARCHY_NEEDS_TASKS

WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
MAX_COMPARISONS = 200_000  # ~0.3 GB of sparse design at 48 features
REGULARIZATION = 1.0  # inverse L2 strength of the logistic fit
MAX_ITERATIONS = 300
SEED = 0

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
    battles: int = 0
    ties: int = 0
    empty_prompts: int = 0
    _prompt_ids: dict[str, int] = field(default_factory=dict)
    _model_ids: dict[str, int] = field(default_factory=dict)

    def prompt_id(self, text: str) -> int:
        if text not in self._prompt_ids:
            self._prompt_ids[text] = len(self.prompts)
            self.prompts.append(text)
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
    found.add(found.prompt_id(prompt), found.model_id(model_a), found.model_id(model_b), outcome)


def score_row_add(found: Comparisons, prompt: str, scores: dict[str, float]) -> None:
    """One comparison per pair of models a score row scores: the higher score wins."""
    if not prompt.strip():
        found.empty_prompts += 1
        return
    if len(scores) < 2:
        return
    index = found.prompt_id(prompt)
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
) -> Comparisons:
    """Every battle and score row of the file as comparisons; errors go to ``add``."""
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
                value = parse_number(record[column], allow_bool=True)
            except (ValueError, TypeError):
                add(f"Row {row}: {str(record[column])[:40]!r} is not a score.", row, column)
                continue
            if value is not None:
                scores[model] = value
        if not scores and not score_columns:
            add(f"Row {row}: winner is empty; give model_a, model_b or tie.", row, "winner")
        score_row_add(found, prompt, scores)
    return found


def _sample(found: Comparisons) -> np.ndarray:
    """Indices of the comparisons to learn from: all, or an even deterministic sample."""
    total = len(found.outcome)
    if total <= MAX_COMPARISONS:
        return np.arange(total)
    return np.sort(np.random.default_rng(SEED).choice(total, MAX_COMPARISONS, replace=False))


def _design(dense: np.ndarray, prompts: np.ndarray, a: np.ndarray, b: np.ndarray, m: int) -> Any:
    """Sparse rows ``phi(x) (x) e_a - phi(x) (x) e_b``: model ``a``'s strength minus model ``b``'s."""
    from scipy import sparse

    rows, width = len(prompts), dense.shape[1]
    values = dense[prompts]
    data = np.concatenate([values, -values], axis=1).reshape(-1)
    columns = np.concatenate(
        [a[:, None] * width + np.arange(width), b[:, None] * width + np.arange(width)], axis=1
    ).reshape(-1)
    indptr = np.arange(0, rows * 2 * width + 1, 2 * width)
    return sparse.csr_matrix((data, columns, indptr), shape=(rows, m * width))


def _prompt_features(prompts: list[str]) -> np.ndarray:
    """The featurizer's dense features, standardised, with a constant for each model's bias."""
    from training.learner.featurizer import featurizer_fit

    _, _, dense = featurizer_fit(prompts)
    spread = dense.std(axis=0)
    scaled = (dense - dense.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return np.hstack([scaled, np.ones((len(prompts), 1))])


def strengths_fit(found: Comparisons) -> np.ndarray:
    """(prompts, models) Bradley-Terry strengths ``s(x, m) = w_m . phi(x)`` for every pair.

    A decided comparison is one row (every other one stated from the loser's side, so both
    classes occur); a tie is two half-weight rows, one won by each side."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    features = _prompt_features(found.prompts)
    chosen = _sample(found)
    prompt = np.asarray(found.prompt_index)[chosen]
    a, b = np.asarray(found.a)[chosen], np.asarray(found.b)[chosen]
    outcome = np.asarray(found.outcome)[chosen]
    m = len(found.models)
    tie = outcome == 0.5
    flip = (np.arange(len(outcome)) % 2 == 1) & ~tie
    sign = np.where(flip, -1.0, 1.0)
    design = sparse.diags(sign) @ _design(features, prompt, a, b, m)
    rows = sparse.vstack([design, design[tie]])
    target = np.concatenate(
        [np.where(tie, 1.0, np.where(flip, 1.0 - outcome, outcome)), np.zeros(int(tie.sum()))]
    )
    weight = np.concatenate([np.where(tie, 0.5, 1.0), np.full(int(tie.sum()), 0.5)])
    fit = LogisticRegression(C=REGULARIZATION, fit_intercept=False, max_iter=MAX_ITERATIONS)
    fit.fit(rows, target, sample_weight=weight)
    weights = fit.coef_.reshape(m, features.shape[1])
    return np.asarray(features @ weights.T)


def field_win_rates(strengths: np.ndarray) -> np.ndarray:
    """Each model's mean win probability against every other model, per prompt, in 0..1."""
    m = strengths.shape[1]
    total = np.zeros_like(strengths)
    for k in range(m):
        total += 1.0 / (1.0 + np.exp(-(strengths - strengths[:, [k]])))
    rates: np.ndarray = (total - 0.5) / (m - 1)  # drop the model's own 0.5 against itself
    return rates


def preference_dataset_parse(
    frame: pd.DataFrame, columns: dict[str, Any] | None, limits: ingest.Limits
) -> ingest.ParsedDataset:
    """A battles (or battles plus scores) file as a ``ParsedDataset`` of expected win rates."""
    columns = columns or {}
    if "task_hierarchy" in columns:  # a battles file is not read by task
        message = f"{HIERARCHY_NEEDS_TASKS} A battles file is not read by task: leave it out."
        raise ingest.DatasetInvalidError([_error(message, None, None)])
    frame = battles_frame(frame, columns.get("prompt"))
    names = [str(c) for c in frame.columns]
    prompt = columns.get("prompt") or next((c for c in ingest.PROMPT_COLUMNS if c in names), None)
    if prompt is None or prompt not in names:
        raise ingest.DatasetInvalidError(
            [
                _error(
                    "No prompt column: a battles file needs 'prompt' (or 'messages', or "
                    "'conversation_a'), 'model_a', 'model_b' and 'winner' columns, or set "
                    "columns.prompt.",
                    None,
                    "prompt",
                )
            ]
        )
    scores = {n[: -len("/score")]: n for n in names if n.endswith("/score") and len(n) > 6}
    errors: list[dict[str, Any]] = []

    def add(message: str, row: int | None, column: str | None) -> None:
        if len(errors) < ingest.MAX_ERRORS:
            errors.append(_error(message, row, column))

    found = frame_comparisons(
        frame, prompt, scores, add, limits.max_cell_chars, ingest.MAX_MODEL_ID
    )
    if not errors:
        _coverage_check(found, limits, add)
    if errors:
        raise ingest.DatasetInvalidError(errors)
    rates = field_win_rates(strengths_fit(found))
    m = len(found.models)
    return ingest.ParsedDataset(
        prompts=found.prompts,
        models=found.models,
        scores=rates,
        costs=None,
        binary=[False] * m,
        warnings=[*_empty_warning(found), _summary(found)],
    )


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
