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

DENSE_CHUNK_ROWS = 10_000  # prompts featurized at a time for the all-rows dense matrix


def sample_indices(n: int, rows: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a uniform sample of ``rows`` of ``n`` rows, or None when all fit."""
    if n <= rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))


def dense_features(featurizer: Featurizer, prompts: list[str]) -> np.ndarray:
    """The dense feature matrix of every prompt, one chunk's TF-IDF matrix alive at a time."""
    out = np.empty((len(prompts), featurizer.dense_size), dtype=np.float64)
    for start in range(0, len(prompts), DENSE_CHUNK_ROWS):
        chunk = prompts[start : start + DENSE_CHUNK_ROWS]
        out[start : start + len(chunk)] = featurizer.transform_many(chunk)[1]
    return out
