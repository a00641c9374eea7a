"""Prompt clusters: each cluster's best model is a floor the served policy can fall back on."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.training.task_prompts import binary_data
from training.learner import artifacts
from training.learner.clusters import clusters_choose
from training.learner.report import report_build
from training.learner.router import mix_key, mix_keys
from training.learner.trainer import FitResult, TrainerConfig, TrainingData, _fold_ids, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
KINDS = (
    ["loop", "return", "print", "variable", "function", "list", "index"],
    ["river", "forest", "meadow", "lantern", "harbour", "violin", "comet"],
    ["sum", "product", "divide", "fraction", "angle", "prime", "square"],
)
# Per kind, each model's chance of a right answer: a different best model for every kind;
# model-3 is the best single model overall, and the best of none.
ACCURACY = np.array(
    [[0.9, 0.3, 0.4, 0.6], [0.3, 0.9, 0.4, 0.6], [0.4, 0.3, 0.9, 0.6]],
)


def _data(rows: int = 450, seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = np.arange(rows) % len(KINDS)
    prompts = [" ".join(rng.choice(KINDS[k], size=8)) + f" {i}" for i, k in enumerate(kinds)]
    scores = (rng.random((rows, ACCURACY.shape[1])) < ACCURACY[kinds]).astype(float)
    data = binary_data(prompts, scores)
    return data, kinds


@pytest.fixture(scope="module")
def fitted() -> tuple[FitResult, TrainingData, np.ndarray]:
    data, kinds = _data()
    return router_fit(data, CONFIG), data, kinds


def test_out_of_fold_clusters_find_each_kinds_best_model() -> None:
    from training.learner.featurizer import featurizer_fit

    data, kinds = _data()
    _, _, dense = featurizer_fit(data.prompts, CONFIG.featurizer)

    choice = clusters_choose(dense, data.scores, _fold_ids(len(kinds), 3, 0), seed=0)

    assert choice.k >= 3
    assert np.mean(choice.oof_incumbents == kinds) > 0.95  # kind k's best model is model-k
    assert choice.oof_scores[choice.k] > choice.oof_scores[1] + 0.2


def test_tradeoff_zero_reaches_the_per_cluster_floor_out_of_fold(
    fitted: tuple[FitResult, TrainingData, np.ndarray],
) -> None:
    fit, data, kinds = fitted
    assert fit.oof_incumbents is not None
    rows = np.arange(len(kinds))
    floor = float(data.scores[rows, fit.oof_incumbents].mean())

    report = report_build(
        router=fit.router,
        predicted=fit.oof_predicted,
        prompts=data.prompts,
        scores=data.scores,
        costs=data.costs,
        evaluation={},
        incumbents=fit.oof_incumbents,
    )

    assert report["curve"][0]["score"] >= floor - 0.01
    assert report["curve"][0]["score"] > report["best_single"]["score"] + 0.2


def test_serving_decides_as_the_report_with_clusters_and_after_a_reload(
    fitted: tuple[FitResult, TrainingData, np.ndarray],
) -> None:
    fit, _, _ = fitted
    fresh, _ = _data(60, seed=7)
    files = artifacts.router_to_files(fit.router)
    digests = artifacts.files_digests(files)
    restored = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    assert restored.clusters is not None and restored.cluster_bonus is not None

    for router in (fit.router, restored):
        predicted = router.predict_many(fresh.prompts)
        incumbents = router.cluster_incumbents(fresh.prompts)
        for tradeoff in (0.0, 0.5, 1.0):
            batch = router.choose_many(predicted, tradeoff, mix_keys(fresh.prompts), incumbents)
            for i, prompt in enumerate(fresh.prompts):
                scores, incumbent = router.predict_one_with_incumbent(prompt)
                assert incumbent == incumbents[i]
                utility = router.utilities(scores, tradeoff, mix_key(prompt), None, incumbent)
                assert int(np.argmax(utility)) == batch[i]


def test_a_version_saved_before_clusters_serves_without_them(
    fitted: tuple[FitResult, TrainingData, np.ndarray],
) -> None:
    fit, _, _ = fitted
    files = artifacts.router_to_files(fit.router)
    meta = json.loads(files["router.json"])
    del meta["cluster_best"], meta["cluster_bonus"]
    meta["format_version"] = 2
    files["router.json"] = json.dumps(meta).encode()
    digests = artifacts.files_digests(files)

    restored = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))

    assert restored.clusters is None and restored.cluster_bonus is None
    assert restored.predict_one_with_incumbent("loop return print")[1] is None


def _damaged_arrays(files: dict[str, bytes], damage: Callable[[dict[str, Any]], object]) -> None:
    """``damage`` gets the arrays and the JSON's ``meta`` in one dict; both are written back."""
    with np.load(io.BytesIO(files[artifacts.ARRAYS_FILE]), allow_pickle=False) as npz:
        arrays: dict[str, Any] = {key: npz[key] for key in npz.files}
    arrays["meta"] = json.loads(files[artifacts.ROUTER_FILE])
    damage(arrays)
    files[artifacts.ROUTER_FILE] = json.dumps(arrays.pop("meta")).encode()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files[artifacts.ARRAYS_FILE] = buffer.getvalue()


def _best(change: Callable[[list[int]], object]) -> Callable[[dict[str, Any]], object]:
    return lambda a: change(a["meta"]["cluster_best"])


@pytest.mark.parametrize(
    "damage",
    [
        _best(lambda best: best.__setitem__(0, 4)),  # a fifth model of four
        _best(lambda best: best.__setitem__(0, -1)),  # would wrap to the last model
        _best(lambda best: best.__setitem__(0, 1.5)),
        _best(lambda best: best.append(0)),  # one more cluster than centroids
        lambda a: a.update(cluster_centroids=a["cluster_centroids"][:, :-1]),
        lambda a: a.update(cluster_centroids=a["cluster_centroids"].astype(np.int64)),
        lambda a: a.update(cluster_mean=np.full_like(a["cluster_mean"], np.inf)),
        lambda a: a.update(cluster_scale=np.zeros_like(a["cluster_scale"])),
        lambda a: a.pop("cluster_centroids"),
    ],
)
def test_malformed_cluster_arrays_are_refused_at_load(
    fitted: tuple[FitResult, TrainingData, np.ndarray],
    damage: Callable[[dict[str, Any]], object],
) -> None:
    files = artifacts.router_to_files(fitted[0].router)
    assert "cluster_best" in json.loads(files[artifacts.ROUTER_FILE])
    _damaged_arrays(files, damage)
    digests = artifacts.files_digests(files)

    with pytest.raises(artifacts.ArtifactError, match="clusters are malformed"):
        artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
