"""The learner end to end without Django: decisions, the tradeoff-0 guarantee and artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from tests.training.conftest import synthetic_frame
from training.learner import artifacts
from training.learner.report import report_build
from training.learner.router import mix_keys
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, router_fit

MODELS = ["math-model", "prose-model"]
CONFIG = TrainerConfig(folds=3, threads=1)


def _data(rows: int = 150, seed: int = 0) -> TrainingData:
    frame = synthetic_frame(rows, seed)
    return TrainingData(
        prompts=frame["prompt"].tolist(),
        models=MODELS,
        scores=frame[[f"{m}/score" for m in MODELS]].to_numpy(float),
        costs=frame[[f"{m}/cost" for m in MODELS]].to_numpy(float),
        binary=[True, True],
    )


@pytest.fixture(scope="module")
def fitted() -> object:
    return router_fit(_data(), CONFIG)


def test_router_sends_each_kind_of_prompt_to_the_model_that_answers_it(fitted: object) -> None:
    router = fitted.router  # type: ignore[attr-defined]
    math = router.predict_one("Compute 17 + 42 * 3.")
    prose = router.predict_one("Write a short poem about the lantern at dawn.")
    assert math[0] > prose[0]  # math-model is predicted better on arithmetic
    assert prose[1] > prose[0]


def test_tradeoff_one_always_picks_the_cheapest_model(fitted: object) -> None:
    router = fitted.router  # type: ignore[attr-defined]
    data = _data()
    picked = router.choose_many(fitted.oof_predicted, 1.0, mix_keys(data.prompts))  # type: ignore[attr-defined]
    assert set(picked.tolist()) == {0}
    assert data.costs[0, 0] < data.costs[0, 1]


def test_tradeoff_zero_is_never_worse_than_the_best_single_model_when_scores_are_noise() -> None:
    rng = np.random.default_rng(3)
    data = _data(120)
    data.scores = np.column_stack([rng.random(120) < 0.5, rng.random(120) < 0.7]).astype(float)
    fit = router_fit(data, CONFIG)

    report = report_build(
        router=fit.router,
        predicted=fit.oof_predicted,
        prompts=data.prompts,
        scores=data.scores,
        costs=data.costs,
        evaluation={},
    )

    assert report["curve"][0]["score"] >= report["best_single"]["score"]
    assert report["tradeoff_zero_gain"] >= 0


def test_costs_fall_as_the_tradeoff_rises(fitted: FitResult) -> None:
    data = _data()
    report = report_build(
        router=fitted.router,
        predicted=fitted.oof_predicted,
        prompts=data.prompts,
        scores=data.scores,
        costs=data.costs,
        evaluation={},
    )
    costs = [point["cost"] for point in report["curve"]]
    assert costs == sorted(costs, reverse=True)
    assert costs[-1] == pytest.approx(0.001)


def test_artifacts_round_trip_to_identical_predictions(fitted: object) -> None:
    files = artifacts.router_to_files(fitted.router)  # type: ignore[attr-defined]
    digests = artifacts.files_digests(files)
    restored = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    prompts = ["Solve for x: 4x = 20.", "Describe the meadow in a gentle tone."]
    np.testing.assert_allclose(restored.predict_many(prompts), fitted.router.predict_many(prompts))  # type: ignore[attr-defined]
    assert not any(name.endswith((".pkl", ".pickle")) for name in files)


def test_a_tampered_artifact_is_refused(fitted: object) -> None:
    files = artifacts.router_to_files(fitted.router)  # type: ignore[attr-defined]
    digests = artifacts.files_digests(files)
    checksum = artifacts.manifest_checksum(digests)
    files["booster-0.txt"] = files["booster-0.txt"].replace(b"Tree=0", b"Tree=0 ")
    with pytest.raises(artifacts.ArtifactError, match=r"booster-0\.txt"):
        artifacts.router_from_files(files, digests, checksum)
    with pytest.raises(artifacts.ArtifactError, match="manifest"):
        artifacts.router_from_files(files, artifacts.files_digests(files), checksum)


def test_single_prompt_prediction_equals_the_batch_prediction(fitted: object) -> None:
    router = fitted.router  # type: ignore[attr-defined]
    prompts = ["Compute 3 + 4 * 5.", "Describe the violin in a gentle tone.", ""]
    batch = router.predict_many(prompts)
    for i, prompt in enumerate(prompts):
        np.testing.assert_allclose(router.predict_one(prompt), batch[i], rtol=1e-9)
        np.testing.assert_allclose(router.predict_one(prompt, [1]), batch[i, [1]], rtol=1e-9)


def test_a_version_saved_before_the_policy_table_serves_as_it_was_trained(
    fitted: FitResult,
) -> None:
    """Format 1 stored one incumbent bonus for every tradeoff; it loads as that table."""
    import json

    files = artifacts.router_to_files(fitted.router)
    meta = json.loads(files["router.json"])
    del meta["offsets"], meta["mixes"]
    meta.update({"format_version": 1, "incumbent": 1, "bonus": 0.25})
    files["router.json"] = json.dumps(meta).encode()
    digests = artifacts.files_digests(files)

    restored = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))

    assert restored.offsets.shape == (len(restored.tradeoffs), 2)
    assert (restored.offsets == [0.0, 0.25]).all()
    assert np.isnan(restored.mixes[:, 2]).all()
    predicted = np.array([[0.7, 0.5]])
    keys = mix_keys(["a prompt"])
    norm = restored.mean_costs / restored.mean_costs.max()
    utility = predicted[0] + [0.0, 0.25] - float(restored.lambdas[0]) * norm
    assert restored.choose_many(predicted, 0.0, keys)[0] == int(np.argmax(utility))
