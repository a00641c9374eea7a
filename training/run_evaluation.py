"""A trained router's report: out of fold on its training rows (cross-validation) or on a
held-out test dataset, and the held-out rows the report was computed on (``heldout.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.heldout import HeldOut
from training.learner.report import report_build
from training.learner.sampling import training_subset
from training.learner.task_hint_report import task_hints_report
from training.learner.trainer import FitResult, TrainingData
from training.models import Dataset
from training.run_data import Orientation, training_data


def run_evaluate(
    fit: FitResult,
    data: TrainingData,
    orientation: Orientation,
    options: dict[str, Any],
    cost_source: str,
    candidates: list[str],
) -> tuple[dict[str, Any], HeldOut]:
    """The version's report and the held-out rows it was computed on."""
    test_id = options.get("test_dataset")
    if test_id is None:
        total = len(data.prompts)
        if fit.oof_rows is not None:  # trained past TrainerConfig.sample_rows
            data = training_subset(data, fit.oof_rows)
        nested = fit.nested
        evaluation = _cross_validation_evaluation(fit, total, len(data.prompts), cost_source)
        report = report_build(
            router=fit.router,
            predicted=fit.oof_predicted if nested is None else nested.predicted,
            prompts=data.prompts,
            scores=data.scores,
            costs=data.costs,
            evaluation=evaluation,
            display=orientation.display,
            tasks=data.tasks,
            task_parents=data.task_parents,
            incumbents=fit.oof_incumbents,
            picks=None if nested is None else nested.picks,
        )
        return report, _held_out(fit.oof_predicted, data, orientation)
    test = Dataset.objects.get(pk=test_id)
    test_data, _, test_cost_source = training_data(test, candidates, options)
    predicted = fit.router.predict_many(test_data.prompts)
    evaluation = {
        "method": "holdout",
        "test_dataset": test.pk,
        "rows": len(test_data.prompts),
        "cost_source": test_cost_source,
    }
    if fit.families is not None:  # chosen out of fold on the training rows
        evaluation["incumbents"] = fit.families.summary()
    report = report_build(
        router=fit.router,
        predicted=predicted,
        prompts=test_data.prompts,
        scores=test_data.scores,
        costs=test_data.costs,
        evaluation=evaluation,
        display=orientation.display,
        tasks=test_data.tasks,
        task_parents=test_data.task_parents,
    )
    if test_data.tasks is not None and data.tasks is not None:
        evaluation["task_hints"] = _task_hints(fit, predicted, data, test_data, orientation)
    return report, _held_out(predicted, test_data, orientation)


def _task_hints(
    fit: FitResult,
    predicted: np.ndarray,
    data: TrainingData,
    test: TrainingData,
    orientation: Orientation,
) -> dict[str, Any]:
    """The held-out report's ``evaluation.task_hints`` (``task_hint_report.py``)."""
    assert test.tasks is not None and data.tasks is not None
    return task_hints_report(
        fit.router,
        predicted,
        (test.prompts, test.scores, test.costs, test.tasks, test.task_parents),
        (data.scores, data.tasks, data.task_parents),
        orientation.display,
    )


def _held_out(predicted: np.ndarray, data: TrainingData, orientation: Orientation) -> HeldOut:
    return HeldOut(
        models=list(data.models),
        predicted=predicted,
        scores=orientation.display_many(data.scores),
        costs=data.costs,
    )


def _cross_validation_evaluation(
    fit: FitResult, total: int, rows: int, cost_source: str
) -> dict[str, Any]:
    """The report's ``evaluation`` of a cross-validated run over ``rows`` of ``total`` rows."""
    evaluation: dict[str, Any] = {
        "dataset_rows": total,
        "method": "cross_validation",
        "folds": fit.folds,
        "rows": rows,
        "cost_source": cost_source,
        "note": "out-of-fold predictions: every row is scored by models that never saw its "
        "label (the featurizer is fitted on prompts only, without labels)",
        "nested": "each fold's decisions use the blend, shrinkage, clusters and policy table "
        "chosen on the other folds' out-of-fold rows only (nested cross-validation)"
        if fit.nested is not None
        else None,
    }
    if fit.families is not None:
        evaluation["incumbents"] = fit.families.summary()
    if fit.oof_rows is not None:
        evaluation["sample"] = (
            f"a uniform sample of {rows} of the {total} rows is featurized and "
            "cross-validated; the LightGBM heads are then refitted on every row"
        )
    return evaluation
