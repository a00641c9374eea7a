"""A shadow version decides a request naming its task as serving does: with the task's hint row
(routing/router_policy.py, ``_shadow_choice``). The version lookup is replaced by the fitted
quiz router of ``tests/training/test_task_hint_tradeoff.py`` (no stored version needed)."""

from __future__ import annotations

from typing import Any

import pytest

from routing import router_policy
from tests.training.test_task_hint_tradeoff import fitted as fitted
from training import serving
from training.learner.trainer import FitResult, TrainingData
from training.models import RouterVersion
from training.predictor import Predictor


def test_the_shadow_decides_with_the_request_task(
    fitted: tuple[FitResult, TrainingData],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fit, test = fitted
    predictor = Predictor(0, "", fit.router)
    monkeypatch.setattr(serving, "predictor_for_version", lambda version, **_: predictor)
    assert test.tasks is not None
    models, differs = list(fit.router.models), 0
    for prompt, task in list(zip(test.prompts, test.tasks, strict=True))[::25]:
        log: Any = router_policy.DecisionLog(
            router_id=1,
            served_version=1,
            exploration=0.0,
            prompt=prompt,
            tradeoff=0.0,
            prices=None,
            shadow=RouterVersion(number=2),
            task=task,
        )
        row = predictor.task_row(task, 0.0)[0]
        assert row is not None
        hinted = predictor.rank(prompt, 0.0, models, None, None, row)[0].model
        assert router_policy._shadow_choice(log, models) == hinted
        differs += hinted != predictor.rank(prompt, 0.0, models)[0].model
    assert differs > 0  # the task changes some shadow decisions
