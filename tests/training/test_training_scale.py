"""Training past ``TrainerConfig.sample_rows``: bounded per-row memory at the dataset row limit.

The featurizer, the cross-validation and the TF-IDF matrix cost ~65 KB per row at their peak,
so they must see at most ``sample_rows`` rows; the LightGBM heads still learn from every row,
featurized a chunk at a time.
"""

from __future__ import annotations

import functools
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from rest_framework.test import APIClient

from tests.training.conftest import synthetic_frame
from tests.training.test_api import _train, admin_api, ready_dataset
from training import execution
from training.learner import sampling, trainer
from training.learner.featurizer import Featurizer, featurizer_fit
from training.learner.sampling import router_fit_sampled
from training.learner.trainer import TrainerConfig, TrainingData

__all__ = ["admin_api", "ready_dataset"]  # fixtures shared with test_api
MODELS = ["math-model", "prose-model"]
ROWS, SAMPLE, CHUNK = 900, 300, 200


def _data() -> TrainingData:
    frame = synthetic_frame(ROWS, 5)
    return TrainingData(
        prompts=frame["prompt"].tolist(),
        models=MODELS,
        scores=frame[[f"{m}/score" for m in MODELS]].to_numpy(float),
        costs=frame[[f"{m}/cost" for m in MODELS]].to_numpy(float),
        binary=[True, True],
    )


def test_only_a_sample_is_featurized_whole_and_the_boosters_see_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fitted_texts: list[int] = []
    tfidf_rows: list[int] = []
    booster_rows: list[int] = []
    tfidf_matrix, train = Featurizer.tfidf_matrix, lgb.train

    def record_fit(texts: list[str], config: Any) -> Any:
        fitted_texts.append(len(texts))
        return featurizer_fit(texts, config)

    def record_tfidf(self: Featurizer, texts: list[str]) -> Any:
        tfidf_rows.append(len(texts))
        return tfidf_matrix(self, texts)

    def record_train(params: Any, dataset: lgb.Dataset, **kwargs: Any) -> lgb.Booster:
        booster_rows.append(np.asarray(dataset.data).shape[0])
        return train(params, dataset, **kwargs)

    monkeypatch.setattr(trainer, "featurizer_fit", record_fit)
    monkeypatch.setattr(Featurizer, "tfidf_matrix", record_tfidf)
    monkeypatch.setattr(lgb, "train", record_train)
    monkeypatch.setattr(sampling, "DENSE_CHUNK_ROWS", CHUNK)
    data = _data()
    fit = router_fit_sampled(data, TrainerConfig(folds=3, threads=1, sample_rows=SAMPLE))

    assert fitted_texts == [SAMPLE]  # the vocabulary, idf and SVD: the sample only
    assert max(tfidf_rows) <= SAMPLE  # no TF-IDF matrix of every row, ever
    assert booster_rows[-len(MODELS) :] == [ROWS] * len(MODELS)  # the served boosters
    assert fit.oof_rows is not None and len(fit.oof_rows) == SAMPLE
    assert len(np.unique(fit.oof_rows)) == SAMPLE
    assert fit.oof_predicted.shape == (SAMPLE, len(MODELS))
    math = fit.router.predict_one("Compute 17 + 42 * 3.")
    prose = fit.router.predict_one("Write a short poem about the lantern at dawn.")
    assert math[0] > prose[0] and prose[1] > prose[0]


def test_below_the_cap_every_row_is_cross_validated() -> None:
    fit = router_fit_sampled(_data(), TrainerConfig(folds=3, threads=1, sample_rows=ROWS))
    assert fit.oof_rows is None
    assert fit.oof_predicted.shape == (ROWS, len(MODELS))


@pytest.mark.django_db
def test_a_sampled_run_reports_the_dataset_rows_and_the_cross_validated_sample(
    admin_api: APIClient,
    ready_dataset: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        execution, "TrainerConfig", functools.partial(TrainerConfig, sample_rows=100)
    )
    admin_api.post("/api/v1/routers", {"slug": "r"}, format="json")

    response = _train(admin_api, django_capture_on_commit_callbacks, "r", ready_dataset["id"])

    run = admin_api.get(f"/api/v1/training-runs/{response.json()['id']}").json()
    assert run["status"] == "succeeded", run["error"]
    evaluation = admin_api.get("/api/v1/routers/r/versions/1/report").json()["evaluation"]
    assert (evaluation["dataset_rows"], evaluation["rows"]) == (ready_dataset["rows"], 100)
    assert "refitted on every row" in evaluation["sample"]
