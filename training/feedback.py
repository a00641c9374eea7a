"""Feedback → the rows of a new dataset version (``training.feedback_jobs`` builds and trains
it on a worker).

Feedback scores one model per prompt (the one that served it). The new dataset is the active
version's training data plus one row per prompt with feedback: the served model's column holds
the feedback, the other candidates' columns hold the active version's predictions for that
prompt (pseudo-labels), so the new version learns from the correction without mistaking "not
tried" for "wrong". Needs prompt logging: without stored prompts there is nothing to learn from.

The rebuilt dataset keeps what the router learned from its data's structure: every base row's
task, subtask and parent task exactly (written as ``task``/``subtask`` cells with a ``columns``
mapping under which validation reads them back unchanged), and each new prompt's task as its
request named it (a task hint the data knows) or else as the active version reads it
(``feedback_tasks``); the dataset's direction (``maximize``), each
model's binary-ness and units (feedback 0..1 spans a dataset's own score range; predictions are
turned back from the learner's higher-is-better form), the costs, and the version's training
options (prices, folds, held-out dataset). Feedback on a prompt the data already holds replaces
that row's score for the served model instead of becoming a duplicate row validation would drop;
several pieces of feedback on one prompt and model count as their mean.

Feedback arrives as plain data (``FeedbackExample``): routing owns the feedback and usage rows
and selects them; training only turns examples into rows and a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routerhub.domain import InvalidInput
from training.feedback_tasks import Levels, feedback_task_levels
from training.ingest import ParsedDataset
from training.learner.task_labels import has_subtasks, task_levels
from training.models import Router, RouterVersion
from training.predictor import Predictor, predictor_for_version
from training.run_data import Orientation, load_parsed
from training.serving import FeedbackExample

Row = dict[str, Any]


def feedback_retrain_check(router: Router) -> RouterVersion:
    """The active version a retrain from feedback builds on (``InvalidInput`` saying what is
    missing): cheap checks, no data read."""
    version = router.active_version
    if version is None or version.dataset is None:
        raise InvalidInput("Train the router once before retraining it from feedback.")
    if not router.organization.prompt_logging:
        raise InvalidInput(
            "Turn on prompt logging (Organization settings) first: feedback can only become "
            "training data for requests whose prompts were kept."
        )
    missing = [m for m in router.candidates if m not in version.dataset.model_ids]
    if missing:
        raise InvalidInput(
            f"The active version's dataset has no scores for: {', '.join(missing)}; retraining "
            "from feedback builds on that data, so train the router on a dataset with them first.",
            param="router",
        )
    return version


def _feedback_check(router: Router, feedback: Sequence[FeedbackExample]) -> None:
    feedback_retrain_check(router)
    if not feedback:
        raise InvalidInput(
            f"No feedback yet on requests served by router/{router.slug} with their prompts; "
            "send POST /api/v1/feedback for some generations first."
        )


@dataclass
class _Scale:
    """Dataset units of the base data's candidates: feedback (0 bad … 1 good) and the
    version's predictions (oriented higher-is-better, ``Orientation``) turned into them."""

    maximize: bool
    binary: dict[str, bool]
    orientation: Orientation
    low: float  # the non-binary columns' range where it leaves 0..1, else 0 and 1
    high: float

    @classmethod
    def of(cls, base: ParsedDataset, candidates: list[str], maximize: bool) -> _Scale:
        columns = [base.models.index(m) for m in candidates]
        binary = {m: base.binary[j] for m, j in zip(candidates, columns, strict=True)}
        graded = [j for m, j in zip(candidates, columns, strict=True) if not binary[m]]
        low, high = 0.0, 1.0
        if graded:
            values = base.scores[:, graded]
            if values.min() < 0.0 or values.max() > 1.0:  # e.g. 1..10: feedback spans it
                low, high = float(values.min()), float(values.max())
        orientation = Orientation(maximize=maximize, all_binary=all(binary.values()))
        return cls(maximize, binary, orientation, low, high)

    def feedback(self, model: str, score: float) -> float:
        good, bad = (1.0, 0.0) if self.binary[model] else (self.high, self.low)
        if not self.maximize:
            good, bad = bad, good
        return self.cell(model, bad + score * (good - bad))

    def predicted(self, model: str, oriented: float) -> float:
        return self.cell(model, self.orientation.display(oriented))

    def cell(self, model: str, value: float) -> float:
        return float(value >= 0.5) if self.binary[model] else float(value)


@dataclass
class _Merged:
    """Feedback per prompt (first-seen order): each served model's mean score and cost."""

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    costs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)  # the first task hint given per prompt

    @classmethod
    def of(cls, feedback: Sequence[FeedbackExample], candidates: list[str]) -> _Merged:
        merged = cls()
        for item in feedback:
            if item.model not in candidates:
                continue
            merged.scores.setdefault(item.prompt, {}).setdefault(item.model, []).append(item.score)
            merged.costs.setdefault(item.prompt, {}).setdefault(item.model, []).append(item.cost)
            if item.task:
                merged.tasks.setdefault(item.prompt, item.task)
        return merged

    def score(self, prompt: str, model: str) -> float | None:
        found = self.scores.get(prompt, {}).get(model)
        return None if found is None else float(np.mean(found))

    def cost(self, prompt: str, model: str) -> float | None:
        found = self.costs.get(prompt, {}).get(model)
        return None if found is None else float(np.mean(found))


def _task_cells(label: str, parent: str, subtasks: bool) -> dict[str, str]:
    """A row's task cells: the parent task, and the rest of its label as the subtask."""
    if not subtasks:
        return {"task": label}
    return {"task": parent, "subtask": label[len(parent) + 1 :] if label != parent else ""}


def _task_mapping(base: ParsedDataset) -> tuple[Levels | None, dict[str, Any] | None]:
    """The base rows' (labels, parents) and the ``columns`` that make validation read the
    cells ``_task_cells`` writes back into exactly these (None, None without tasks)."""
    if base.tasks is None:
        return None, None
    parents, labels = task_levels(base.tasks, base.task_parents)
    if has_subtasks(labels, parents):
        return (labels, parents), {"task": "task", "subtask": "subtask"}
    return (labels, parents), {"task": "task", "task_hierarchy": False}


@dataclass
class _Rebuild:
    """What the rows are built from: the base data's candidate columns, the merged feedback,
    the units, the base rows' task levels and whether they are written with a subtask."""

    base: ParsedDataset
    candidates: list[str]
    merged: _Merged
    scale: _Scale
    levels: Levels | None
    subtasks: bool

    def base_rows(self) -> list[dict[str, Any]]:
        """The base rows, the feedback on a prompt they hold replacing its model's score."""
        base, rows = self.base, []
        columns = [base.models.index(m) for m in self.candidates]
        for i, prompt in enumerate(base.prompts):
            row: dict[str, Any] = {"prompt": prompt}
            if self.levels is not None:
                row.update(_task_cells(self.levels[0][i], self.levels[1][i], self.subtasks))
            for model, j in zip(self.candidates, columns, strict=True):
                told = self.merged.score(prompt, model)
                own = float(base.scores[i, j])
                row[f"{model}/score"] = own if told is None else self.scale.feedback(model, told)
                if base.costs is not None:
                    paid = self.merged.cost(prompt, model)
                    row[f"{model}/cost"] = float(base.costs[i, j]) if paid is None else paid
            rows.append(row)
        return rows

    def new_rows(self, prompts: list[str], predictor: Predictor, tasks: Levels) -> list[Row]:
        """One row per other prompt: its feedback, the version's predictions elsewhere."""
        base, rows = self.base, []
        columns = [base.models.index(m) for m in self.candidates]
        mean_costs = None if base.costs is None else base.costs[:, columns].mean(axis=0)
        base_means = base.scores[:, columns].mean(axis=0)
        for k, prompt in enumerate(prompts):
            row: dict[str, Any] = {"prompt": prompt}
            if self.levels is not None:
                row.update(_task_cells(tasks[0][k], tasks[1][k], self.subtasks))
            ranked = predictor.rank(prompt, 0.0, self.candidates)
            predicted = {r.model: r.score for r in ranked}
            for j, model in enumerate(self.candidates):
                told, guess = self.merged.score(prompt, model), predicted.get(model)
                if told is not None:
                    row[f"{model}/score"] = self.scale.feedback(model, told)
                elif guess is not None:
                    row[f"{model}/score"] = self.scale.predicted(model, guess)
                else:  # a candidate added after the version was trained: its mean score
                    row[f"{model}/score"] = self.scale.cell(model, base_means[j])
                if mean_costs is not None:
                    paid = self.merged.cost(prompt, model)
                    row[f"{model}/cost"] = float(mean_costs[j]) if paid is None else paid
            rows.append(row)
        return rows


def feedback_dataset(
    router: Router, feedback: Sequence[FeedbackExample]
) -> tuple[list[Row], dict[str, Any] | None]:
    """JSON rows (Not Diamond layout, with ``task``/``subtask`` cells when the data names
    tasks) of the active version's data with the feedback merged in, and their ``columns``."""
    _feedback_check(router, feedback)
    version = router.active_version
    assert version is not None and version.dataset is not None
    base = load_parsed(version.dataset)
    candidates = [m for m in router.candidates if m in base.models]
    levels, mapping = _task_mapping(base)
    rebuild = _Rebuild(
        base=base,
        candidates=candidates,
        merged=_Merged.of(feedback, candidates),
        scale=_Scale.of(base, candidates, version.dataset.maximize),
        levels=levels,
        subtasks=mapping is not None and "subtask" in mapping,
    )
    held = set(base.prompts)
    new = [prompt for prompt in rebuild.merged.scores if prompt not in held]
    predictor = predictor_for_version(version)
    tasks: Levels = ([], [])
    if levels is not None:
        incumbents = (version.report.get("evaluation") or {}).get("incumbents") or {}
        family = incumbents.get("family")
        hints = [rebuild.merged.tasks.get(prompt, "") for prompt in new]
        tasks = feedback_task_levels(predictor.router, family, levels, base.prompts, new, hints)
    return [*rebuild.base_rows(), *rebuild.new_rows(new, predictor, tasks)], mapping
