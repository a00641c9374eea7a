"""The session's shared fits (``tests/shared_fits.py``) are keyed by everything a fit reads."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from tests import shared_fits
from training.learner.trainer import TrainerConfig, TrainingData


def _data(**changes: Any) -> TrainingData:
    data = TrainingData(
        prompts=["Compute 2 + 2.", "Write a haiku.", "Name a prime."],
        models=["cheap", "dear"],
        scores=np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]),
        costs=np.array([[0.1, 1.0]] * 3),
        binary=[True, True],
        tasks=["math/arith", "writing/poem", "math/primes"],
        task_parents=["math", "writing", "math"],
    )
    return dataclasses.replace(data, **changes)


def test_the_same_rows_under_other_parent_tasks_are_fitted_again_not_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shared_fits, "_fits", {})
    fitted: list[list[str] | None] = []

    def real(data: TrainingData, config: Any, progress: Any) -> dict[str, Any]:
        fitted.append(data.task_parents)
        return {"parents": data.task_parents}

    fit = shared_fits.shared_fit(real)
    nested = _data(task_parents=["math", "writing", "math"])
    flat = _data(task_parents=["math/arith", "writing/poem", "math/primes"])

    assert fit(nested) == {"parents": nested.task_parents}
    assert fit(flat) == {"parents": flat.task_parents}  # its own fit, not the nested one's
    assert fit(_data()) == {"parents": nested.task_parents}  # the same input: shared
    assert fitted == [nested.task_parents, flat.task_parents]


CHANGED: dict[str, Any] = {
    "prompts": ["Compute 2 + 2.", "Write a haiku.", "Name a prime number."],
    "models": ["cheap", "other"],
    "scores": np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.5]]),
    "costs": np.array([[0.1, 2.0]] * 3),
    "binary": [True, False],
    "costs_known": False,
    "tasks": ["math/arith", "writing/poem", "math/arith"],
    "task_parents": None,
}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TrainingData)])
def test_every_field_of_the_training_data_and_the_config_changes_the_key(field: str) -> None:
    assert field in CHANGED, f"TrainingData.{field} is new: add a changed value for it here"
    base = shared_fits.fit_key(_data(), None)

    assert shared_fits.fit_key(_data(**{field: CHANGED[field]}), None) != base
    assert shared_fits.fit_key(_data(), TrainerConfig(seed=1)) != base
    assert shared_fits.fit_key(_data(), None) == base
