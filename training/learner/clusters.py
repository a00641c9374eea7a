"""Prompt clusters and each cluster's best model: a floor the policy table can always fall back on.

RouterDC's observation is that prompts of one kind (a task, a language, code) share their best
model. K-means on the featurizer's standardised dense features (SVD of the TF-IDF vector plus
the script, code and math statistics) groups them without labels; each cluster's best model is
the one with the highest mean score on the cluster's training rows, shrunk toward the model's
overall mean so a small cluster falls back to the overall best (``SMOOTHING_ROWS``).

The number of clusters is chosen per dataset on out-of-fold rows: for every k of ``K_GRID``
(1 = the overall best model) each fold's clusters and their best models are fitted on the other
folds and assigned to the fold's rows, and the k whose out-of-fold "best model of my cluster"
scores highest wins (ties go to fewer clusters). The policy table then treats the cluster's best
model as the incumbent (``calibration``): with a bonus large enough, the per-cluster floor itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

K_GRID = (1, 2, 4, 8, 16, 32)
ROWS_PER_CLUSTER = 20  # k is tried only while every cluster could hold this many rows
SMOOTHING_ROWS = 5.0  # a cluster's means are shrunk toward the overall means by this many rows
KMEANS_INITS = 3
KMEANS_MAX_ROWS = 3000  # centroids are fitted on a seeded sample of at most this many rows


@dataclass(frozen=True)
class PromptClusters:
    """Nearest-centroid assignment on standardised dense features, and each cluster's best."""

    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    centroids: np.ndarray  # (k, d), in standardised units
    best: np.ndarray  # (k,) model index

    def assign(self, dense: np.ndarray) -> np.ndarray:
        """Cluster of each row of ``dense`` (n, d)."""
        scaled = (np.atleast_2d(dense) - self.mean) / self.scale
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 does not change the argmin.
        distance = (self.centroids**2).sum(axis=1) - 2.0 * scaled @ self.centroids.T
        return np.asarray(np.argmin(distance, axis=1), dtype=np.int64)

    def incumbents(self, dense: np.ndarray) -> np.ndarray:
        """The best model of each row's cluster."""
        return np.asarray(self.best[self.assign(dense)], dtype=np.int64)


def _cluster_best(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    overall = scores.mean(axis=0)
    best = np.zeros(k, dtype=np.int64)
    for cluster in range(k):
        rows = labels == cluster
        smoothed = (scores[rows].sum(axis=0) + SMOOTHING_ROWS * overall) / (
            rows.sum() + SMOOTHING_ROWS
        )
        best[cluster] = int(np.argmax(smoothed))
    return best


def clusters_fit(dense: np.ndarray, scores: np.ndarray, k: int, seed: int) -> PromptClusters:
    """K-means with ``k`` clusters on ``dense`` (n, d) and each cluster's best model."""
    from sklearn.cluster import KMeans  # fit-time only

    mean = dense.mean(axis=0)
    spread = dense.std(axis=0)
    scale = np.where(spread > 1e-12, spread, 1.0)
    scaled = (dense - mean) / scale
    if k <= 1:
        centroids = np.zeros((1, dense.shape[1]))
        labels = np.zeros(len(dense), dtype=np.int64)
    else:
        sample = np.random.default_rng(seed).permutation(len(scaled))[:KMEANS_MAX_ROWS]
        kmeans = KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=seed)
        centroids = np.asarray(kmeans.fit(scaled[sample]).cluster_centers_)
        labels = PromptClusters(mean, scale, centroids, np.zeros(k, np.int64)).assign(dense)
    return PromptClusters(mean, scale, centroids, _cluster_best(labels, scores, k))


@dataclass(frozen=True)
class ClusterChoice:
    k: int
    oof_incumbents: np.ndarray  # (n,) each row's cluster-best model, fitted without its fold
    oof_scores: dict[int, float]  # k -> out-of-fold mean score of the cluster-best model
    # k -> each row's out-of-fold cluster-best model with k clusters
    oof_by_k: dict[int, np.ndarray] = field(default_factory=dict)

    def chosen_on(self, scores: np.ndarray, rows: np.ndarray) -> tuple[int, np.ndarray]:
        """The k that ``clusters_choose`` would pick from ``rows`` alone (nested
        cross-validation chooses it without the evaluated fold), and its incumbents."""
        on_rows = {k: float(scores[rows, inc[rows]].mean()) for k, inc in self.oof_by_k.items()}
        k = max(on_rows, key=lambda c: (on_rows[c], -c))
        return k, self.oof_by_k[k]


def clusters_choose(
    dense: np.ndarray, scores: np.ndarray, fold_of: np.ndarray, seed: int
) -> ClusterChoice:
    """The number of clusters whose out-of-fold cluster-best model scores highest."""
    n = len(dense)
    folds = int(fold_of.max()) + 1
    rows = np.arange(n)
    results: dict[int, np.ndarray] = {}
    smallest_train = n - int(np.bincount(fold_of).max())
    for k in K_GRID:
        if k > 1 and k * ROWS_PER_CLUSTER > smallest_train:
            break
        incumbents = np.zeros(n, dtype=np.int64)
        for fold in range(folds):
            train, test = fold_of != fold, fold_of == fold
            fitted = clusters_fit(dense[train], scores[train], k, seed)
            incumbents[test] = fitted.incumbents(dense[test])
        results[k] = incumbents
    oof_scores = {k: float(scores[rows, inc].mean()) for k, inc in results.items()}
    best_k = max(oof_scores, key=lambda k: (oof_scores[k], -k))
    return ClusterChoice(best_k, results[best_k], oof_scores, results)
