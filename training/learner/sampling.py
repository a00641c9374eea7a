"""Training past ``TrainerConfig.sample_rows``: what keeps a run's memory bounded.

The featurizer's fit, its TF-IDF matrix (thousands of char n-grams per prompt), the
cross-validated heads, the calibration and the clusters cost ~65 KB per row at their peak, so
500,000 rows (the dataset limit) would need ~33 GB. Past the cap they run on a uniform, seeded
sample of ``sample_rows`` rows; the LightGBM heads are then refitted on the dense features
(SVD projection + text statistics, ~0.4 KB a row) of every row, computed in chunks so the
full TF-IDF matrix never exists. The report then evaluates the sample's out-of-fold rows.
"""

from __future__ import annotations

import numpy as np

from training.learner.featurizer import Featurizer
from training.learner.trainer import (
    STAGE_FITTING,
    FitResult,
    Progress,
    TrainerConfig,
    TrainingData,
    booster_fit,
    router_fit,
)

DENSE_CHUNK_ROWS = 10_000  # prompts featurized at a time for the all-rows dense matrix


def router_fit_sampled(
    data: TrainingData, config: TrainerConfig | None = None, progress: Progress | None = None
) -> FitResult:
    """``router_fit``, past ``config.sample_rows`` on a uniform sample with its LightGBM heads
    refitted on the dense features of every row (``FitResult.oof_rows`` names the sample)."""
    cfg = config or TrainerConfig()
    rows = sample_indices(len(data.prompts), cfg.sample_rows, cfg.seed)
    if rows is None:
        return router_fit(data, cfg, progress)
    fit = router_fit(training_subset(data, rows), cfg, progress)
    dense = dense_features(fit.router.featurizer, data.prompts)
    for j, head in enumerate(fit.router.heads):
        if progress is not None:
            progress(STAGE_FITTING, 0.9)  # lets a cancel stop the refits
        if head.booster is not None:
            head.booster = booster_fit(dense, data.scores[:, j], data.binary[j], cfg)
    fit.oof_rows = rows
    return fit


def sample_indices(n: int, rows: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a uniform sample of ``rows`` of ``n`` rows, or None when all fit."""
    if n <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def training_subset(data: TrainingData, rows: np.ndarray) -> TrainingData:
    """The rows ``rows`` of ``data``."""
    return TrainingData(
        prompts=[data.prompts[i] for i in rows],
        models=data.models,
        scores=data.scores[rows],
        costs=data.costs[rows],
        binary=data.binary,
        costs_known=data.costs_known,
        tasks=[data.tasks[i] for i in rows] if data.tasks is not None else None,
        task_parents=None if data.task_parents is None else [data.task_parents[i] for i in rows],
    )


def dense_features(featurizer: Featurizer, prompts: list[str]) -> np.ndarray:
    """The dense feature matrix of every prompt, one chunk's TF-IDF matrix alive at a time."""
    out = np.empty((len(prompts), featurizer.dense_size), dtype=np.float64)
    for start in range(0, len(prompts), DENSE_CHUNK_ROWS):
        chunk = prompts[start : start + DENSE_CHUNK_ROWS]
        out[start : start + len(chunk)] = featurizer.transform_many(chunk)[1]
    return out
