"""Prompt clusters and each cluster's best model: a floor the policy table can always fall back on.

RouterDC's observation is that prompts of one kind (a task, a language, code) share their best
model. K-means on the featurizer's standardised dense features (SVD of the TF-IDF vector plus
the script, code and math statistics) groups them without labels; each cluster's best model is
the one with the highest mean score on the cluster's training rows, shrunk toward the model's
overall mean so a small cluster falls back to the overall best (``SMOOTHING_ROWS``).

The number of clusters is chosen per dataset on out-of-fold rows: for every k of ``K_GRID``
(1 = the overall best model) each fold's clusters and their best models are fitted on the other
folds and assigned to the fold's rows, and the k whose out-of-fold "best model of my cluster"
scores highest wins (ties go to fewer clusters). When the training data names tasks, task
segments (``segments.py``) join the candidates as a named family, scored on their own
out-of-fold incumbents (``ClusterChoice.with_family``). The policy table then treats the chosen
family's best model as the incumbent (``calibration``): with a bonus large enough, the
per-cluster (or per-segment) floor itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        return nearest((np.atleast_2d(dense) - self.mean) / self.scale, self.centroids)

    def incumbents(self, dense: np.ndarray) -> np.ndarray:
        """The best model of each row's cluster."""
        return np.asarray(self.best[self.assign(dense)], dtype=np.int64)


def clusters_from_arrays(
    best: object, arrays: dict[str, np.ndarray], dense_size: int, models: int
) -> PromptClusters:
    """Stored clusters (``cluster_best`` from the JSON, the rest from the arrays), refused
    (``ValueError``) unless each has the dtype, shape, range and finite values the version's
    featurizer and models allow: a best model past the models fails every decision."""
    best_array = np.asarray(best)
    if best_array.dtype.kind != "i" or best_array.shape[:1] != best_array.shape:
        raise ValueError(f"cluster_best is not a list of model indices: {best_array.dtype}")
    k = len(best_array)
    if not 1 <= k <= K_GRID[-1] or (best_array < 0).any() or (best_array >= models).any():
        raise ValueError(f"{k} clusters, or a cluster whose best model is unknown")
    shapes = {"mean": (dense_size,), "scale": (dense_size,), "centroids": (k, dense_size)}
    loaded = {}
    for name, shape in shapes.items():
        array = arrays.get(f"cluster_{name}")
        if array is None or array.dtype.kind != "f" or array.shape != shape:
            raise ValueError(f"cluster_{name} is missing or not a float array of shape {shape}")
        loaded[name] = np.asarray(array, dtype=np.float64)
        if not np.isfinite(loaded[name]).all():
            raise ValueError(f"cluster_{name} is not finite")
    if (loaded["scale"] <= 0).any():
        raise ValueError("cluster_scale has a zero or negative scale")
    return PromptClusters(**loaded, best=best_array.astype(np.int64))


def centroid_distances(
    scaled: np.ndarray, centroids: np.ndarray, square_norms: np.ndarray | None = None
) -> np.ndarray:
    """(n, k) squared distances less |x|^2: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 does
    not change which centroid is nearest; ``square_norms``: the |c|^2, when precomputed."""
    if square_norms is None:
        square_norms = (centroids**2).sum(axis=1)
    return np.asarray(square_norms - 2.0 * np.atleast_2d(scaled) @ centroids.T)


def nearest(scaled: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (k, d) of each standardised row (n, d)."""
    return np.asarray(np.argmin(centroid_distances(scaled, centroids), axis=1), dtype=np.int64)


def standardisation(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each dense feature's mean and spread (1 where it does not vary)."""
    spread = dense.std(axis=0)
    return dense.mean(axis=0), np.where(spread > 1e-12, spread, 1.0)


def kmeans_centroids(scaled: np.ndarray, k: int, seed: int) -> np.ndarray:
    """K-means centroids (k, d) of standardised rows, fitted on a seeded sample of them."""
    from sklearn.cluster import KMeans  # fit-time only

    sample = np.random.default_rng(seed).permutation(len(scaled))[:KMEANS_MAX_ROWS]
    kmeans = KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=seed)
    return np.asarray(kmeans.fit(scaled[sample]).cluster_centers_)


def cluster_best(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Each of k clusters' best model by its rows' mean scores shrunk toward the overall means."""
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
    mean, scale = standardisation(dense)
    scaled = (dense - mean) / scale
    if k <= 1:
        centroids = np.zeros((1, dense.shape[1]))
        labels = np.zeros(len(dense), dtype=np.int64)
    else:
        centroids = kmeans_centroids(scaled, k, seed)
        labels = nearest(scaled, centroids)
    return PromptClusters(mean, scale, centroids, cluster_best(labels, scores, k))


Family = int | str  # k clusters, or a named family of incumbents (segments.TASKS_FAMILY)


@dataclass(frozen=True)
class ClusterChoice:
    k: Family  # the chosen family: k clusters (1: the overall best model) or a named one
    oof_incumbents: np.ndarray  # (n,) each row's cluster-best model, fitted without its fold
    oof_scores: dict[Family, float]  # family -> out-of-fold mean score of its incumbents
    # family -> each row's out-of-fold incumbent (k clusters' best, or the named family's)
    oof_by_k: dict[Family, np.ndarray] = field(default_factory=dict)
    # a named family's number of segments (k clusters have k): ties go to fewer
    sizes: dict[Family, int] = field(default_factory=dict)
    # a task family's classifier and temperature (``TaskReading.summary``), for the report
    readings: dict[Family, dict[str, Any]] = field(default_factory=dict)

    def size(self, family: Family) -> int:
        return self.sizes.get(family, family if isinstance(family, int) else 1 << 30)

    def top_k(self) -> int:
        """The best k >= 2 clusters by their out-of-fold score (0: none tried); clusters with
        sub-clusters refine it."""
        tried = [k for k in self.oof_scores if isinstance(k, int) and k >= 2]
        return max(tried, key=lambda k: (self.oof_scores[k], -k), default=0)

    def summary(self) -> dict[str, Any]:
        """The report's ``evaluation.incumbents``: the family chosen, its number of clusters
        (k clusters, or the top level's k of clusters+sub) and every family's out-of-fold mean
        score ("1": the overall best model, "2"…: k clusters, or the named family), and each
        task family's classifier and temperature (``task_reading``)."""
        family: str = "none" if self.k == 1 else "clusters" if isinstance(self.k, int) else self.k
        k = self.k if family == "clusters" else self.top_k() if family == "clusters+sub" else None
        return {
            "family": family,
            "k": k,
            "out_of_fold": {str(f): round(v, 4) for f, v in self.oof_scores.items()},
            "task_reading": {str(f): reading for f, reading in self.readings.items()},
        }

    def chosen_on(self, scores: np.ndarray, rows: np.ndarray) -> tuple[Family, np.ndarray]:
        """The family that ``clusters_choose`` would pick from ``rows``' scores alone (nested
        cross-validation: the other folds' rows, whose incumbents were fitted on folds that
        include the evaluated one), and its incumbents."""
        on_rows = {k: float(scores[rows, inc[rows]].mean()) for k, inc in self.oof_by_k.items()}
        k = max(on_rows, key=lambda c: (on_rows[c], -self.size(c)))
        return k, self.oof_by_k[k]

    def with_family(
        self,
        family: str,
        incumbents: np.ndarray,
        size: int,
        scores: np.ndarray,
        reading: dict[str, Any] | None = None,
    ) -> ClusterChoice:
        """The choice with one more family of out-of-fold incumbents among the candidates (a
        task family with its ``reading``: the report's account of its classifier)."""
        by_family = {**self.oof_by_k, family: incumbents}
        sizes = {**self.sizes, family: size}
        rows = np.arange(len(scores))
        k, chosen = ClusterChoice(self.k, self.oof_incumbents, {}, by_family, sizes).chosen_on(
            scores, rows
        )
        oof_scores = {**self.oof_scores, family: float(scores[rows, incumbents].mean())}
        readings = dict(self.readings)
        if reading is not None:
            readings[family] = reading
        return ClusterChoice(k, chosen, oof_scores, by_family, sizes, readings)


def clusters_choose(
    dense: np.ndarray, scores: np.ndarray, fold_of: np.ndarray, seed: int
) -> ClusterChoice:
    """The number of clusters whose out-of-fold cluster-best model scores highest."""
    n = len(dense)
    folds = int(fold_of.max()) + 1
    rows = np.arange(n)
    results: dict[Family, np.ndarray] = {}
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
    oof_scores: dict[Family, float] = {
        k: float(scores[rows, inc].mean()) for k, inc in results.items()
    }
    best_k = max(oof_scores, key=lambda k: (oof_scores[k], -int(k)))
    return ClusterChoice(best_k, results[best_k], oof_scores, results)
