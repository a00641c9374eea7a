"""The flattened forest predicts exactly what LightGBM's Booster.predict does."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from training.learner.forest import forest_from_boosters


def _data(rng: np.random.Generator, n: int, *, gaps: bool) -> np.ndarray:
    x = rng.normal(size=(n, 10))
    x[rng.random(x.shape) < 0.1] = 0.0
    if gaps:
        x[rng.random(x.shape) < 0.05] = np.nan
    return x


@pytest.mark.parametrize("gaps", [False, True], ids=["dense", "with-missing-values"])
def test_forest_matches_booster_predict_for_binary_and_regression_heads(gaps: bool) -> None:
    rng = np.random.default_rng(0)
    x = _data(rng, 400, gaps=gaps)
    label = (x[:, 0] + np.nan_to_num(x[:, 1]) > 0).astype(int)
    value = np.nan_to_num(x[:, 2]) * 3 + 1
    params = {"num_leaves": 7, "verbose": -1}
    boosters = [
        lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, label), 40),
        lgb.train({**params, "objective": "regression"}, lgb.Dataset(x, value), 40),
        lgb.train(
            {**params, "objective": "binary", "zero_as_missing": True}, lgb.Dataset(x, label), 20
        ),
    ]
    forest = forest_from_boosters(boosters)
    rows = _data(rng, 300, gaps=gaps)

    ours = np.array([forest.predict(row) for row in rows])

    theirs = np.column_stack([b.predict(rows) for b in boosters])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert len(np.unique(ours[:, 0])) > 10  # the trees really split


@pytest.mark.parametrize("leaves", [2, 31, 63, 100])
def test_every_tree_shape_exits_where_booster_predict_does(leaves: int) -> None:
    """Small and large trees, trees that could not split (a single leaf) and trees past the
    63 leaves the exit masks hold (the level-by-level walk serves those)."""
    rng = np.random.default_rng(1)
    x = _data(rng, 2000, gaps=False)
    label = (np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] > 0).astype(int)
    params = {"num_leaves": leaves, "min_data_in_leaf": 2, "verbose": -1}
    boosters = [
        lgb.train({**params, "objective": "binary"}, lgb.Dataset(x, label), 30),
        lgb.train(
            {**params, "objective": "regression", "min_data_in_leaf": 5000},
            lgb.Dataset(x, x[:, 3]),
            5,
        ),
    ]
    forest = forest_from_boosters(boosters)
    rows = _data(rng, 200, gaps=False)

    ours = np.array([forest.predict(row) for row in rows])

    theirs = np.column_stack([b.predict(rows) for b in boosters])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert (forest.exits is None) == (leaves > 63)
