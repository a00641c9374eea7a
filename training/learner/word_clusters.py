"""Word clusters: prompts grouped by what they are about, not by the template they share.

Why: k-means on the standardised dense features (``clusters.py``) sees the whole prompt, and where
two tasks share a layout (MMLU's and ARC's four-option questions) the layout, the length and the
surface statistics dominate; the tasks merge and so do their best models. Here the prompt is its
TF-IDF vector (word and char blocks, the featurizer's own) restricted to *content* terms — those
in at most ``CONTENT_MAX_SHARE`` of the training prompts, so a template every prompt of most
tasks carries is dropped while a word a task's prompts share stays — L2-normalised, and clustered
by spherical k-means (cosine similarity to unit centroids). Each cluster's best model is the
clusters' (shrunk toward the overall means).

Serving is the task classifier's lookup (``segments.PromptSegments`` with the classifier top
level, one sub-segment per group): the argmax over clusters of the prompt's TF-IDF row times a
(vocabulary, k) matrix — the centroids on the content terms, zero on the template's — plus a
bias that sends a prompt with no content term to the largest cluster. The argmax of a dot
product with unit centroids does not change when the prompt's vector is scaled, so the served
row needs no re-normalisation over the content terms, and the stored arrays are those of task
segments (artifact format 5; no new array). The number of clusters is chosen out of fold like
k-means' (``K_GRID``) and the family competes with the others in ``ClusterChoice``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from training.learner.clusters import (
    K_GRID,
    KMEANS_INITS,
    KMEANS_MAX_ROWS,
    ROWS_PER_CLUSTER,
    cluster_best,
    standardisation,
)
from training.learner.segments import PromptSegments

CONTENT_MAX_SHARE = 0.2  # a term in more of the training prompts than this is template
SPHERICAL_ITERATIONS = 30
EMPTY_BIAS = 1e-6  # a prompt without content terms goes to the largest cluster


def content_columns(tfidf: sparse.csr_matrix, width: int) -> np.ndarray:
    """Indices among the first ``width`` columns (the word block) of the terms in at least one
    and at most ``CONTENT_MAX_SHARE`` of the rows."""
    df = np.bincount(tfidf.indices, minlength=tfidf.shape[1])[:width]
    return np.flatnonzero((df > 0) & (df <= CONTENT_MAX_SHARE * tfidf.shape[0]))


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.csr_matrix(sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix)


def _unit_centroids(x: sparse.csr_matrix, labels: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Each cluster's mean direction (an empty cluster keeps its old centroid)."""
    k = len(old)
    member = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, x.shape[0])
    )
    sums = np.asarray((member @ x).todense())
    norms = np.linalg.norm(sums, axis=1)
    return np.where(norms[:, None] > 0, sums / np.where(norms > 0, norms, 1.0)[:, None], old)


def _seeds(x: sparse.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ on cosine distance: each next centroid drawn in proportion to 1 - the row's
    best similarity so far."""
    first = int(rng.integers(x.shape[0]))
    centroids = [np.asarray(x[first].todense()).ravel()]
    best = np.asarray(x @ centroids[0]).ravel()
    for _ in range(1, k):
        distance = np.maximum(1.0 - best, 0.0)
        total = distance.sum()
        pick = int(rng.choice(x.shape[0], p=distance / total)) if total > 0 else 0
        centroids.append(np.asarray(x[pick].todense()).ravel())
        best = np.maximum(best, np.asarray(x @ centroids[-1]).ravel())
    return np.vstack(centroids)


def spherical_kmeans(x: sparse.csr_matrix, k: int, seed: int) -> np.ndarray:
    """Unit centroids (k, width) of unit rows ``x``, fitted on a seeded sample of at most
    ``KMEANS_MAX_ROWS`` of them; the best of ``KMEANS_INITS`` starts by total similarity."""
    rng = np.random.default_rng(seed)
    sample = x[rng.permutation(x.shape[0])[:KMEANS_MAX_ROWS]]
    best_total, best_centroids = -np.inf, np.zeros((k, x.shape[1]))
    for _ in range(KMEANS_INITS):
        centroids = _seeds(sample, k, rng)
        labels = np.full(sample.shape[0], -1)
        for _ in range(SPHERICAL_ITERATIONS):
            similarity = np.asarray(sample @ centroids.T)
            new = np.argmax(similarity, axis=1)
            if (new == labels).all():
                break
            labels = new
            centroids = _unit_centroids(sample, labels, centroids)
        total = float(np.asarray(sample @ centroids.T).max(axis=1).sum())
        if total > best_total:
            best_total, best_centroids = total, centroids
    return best_centroids


@dataclass(frozen=True)
class ContentSpace:
    """Training rows' TF-IDF restricted to their content terms: as served (``restricted``, for
    labels) and L2-normalised (``unit``, for spherical k-means)."""

    columns: np.ndarray
    restricted: sparse.csr_matrix
    unit: sparse.csr_matrix


def content_space(tfidf: sparse.csr_matrix, width: int) -> ContentSpace:
    """The content terms among the first ``width`` columns of these rows."""
    columns = content_columns(tfidf, width)
    restricted = sparse.csr_matrix(tfidf[:, columns])
    return ContentSpace(columns, restricted, _unit_rows(restricted))


def _fit_in(
    space: ContentSpace, vocabulary: int, dense: np.ndarray, scores: np.ndarray, k: int, seed: int
) -> PromptSegments:
    term = np.zeros((vocabulary, k), dtype=np.float32)
    if len(space.columns):
        term[space.columns] = spherical_kmeans(space.unit, k, seed).T
    # Labels as served: the float32 weights times the row's unnormalised TF-IDF (its terms
    # outside the content columns add exact zeros), then the bias.
    similarity = np.asarray(space.restricted @ term[space.columns], dtype=np.float64)
    bias = np.zeros(k)
    bias[int(np.argmax(np.bincount(np.argmax(similarity, axis=1), minlength=k)))] = EMPTY_BIAS
    labels = np.argmax(similarity + bias, axis=1)
    mean, scale = standardisation(dense)
    return PromptSegments(
        mean=mean,
        scale=scale,
        centroids=np.zeros((k, dense.shape[1])),
        owner=np.arange(k, dtype=np.int64),
        best=cluster_best(labels, scores, k),
        term_weights=term,
        bias=bias,
    )


def word_clusters_fit(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    k: int,
    seed: int,
    width: int,
) -> PromptSegments:
    """Spherical k-means with ``k`` clusters on these rows' content terms among the first
    ``width`` columns, as segments with a classifier top level (one sub-segment per cluster)
    and each cluster's best model."""
    return _fit_in(content_space(tfidf, width), tfidf.shape[1], dense, scores, k, seed)


def word_clusters_choose(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    fold_of: np.ndarray,
    seed: int,
    width: int,
) -> tuple[int, np.ndarray, dict[int, float]]:
    """The number of word clusters (k >= 2 of ``K_GRID``) whose out-of-fold cluster-best model
    scores highest (ties to fewer), its out-of-fold incumbents and every k's score (0 and
    empty: too few rows for two clusters)."""
    n = len(scores)
    smallest_train = n - int(np.bincount(fold_of).max())
    grid = [k for k in K_GRID if k >= 2 and k * ROWS_PER_CLUSTER <= smallest_train]
    results = {k: np.zeros(n, dtype=np.int64) for k in grid}
    # The word block alone: row slices of it, not of the whole TF-IDF (char n-grams are most
    # of its entries). Its product with the weights' word rows is the served one: the char
    # rows are zero.
    words = sparse.csr_matrix(tfidf[:, :width])
    for fold in range(int(fold_of.max()) + 1) if grid else ():
        train, test = fold_of != fold, fold_of == fold
        space = content_space(words[train], width)  # once per fold, for every k
        for k in grid:
            fitted = _fit_in(space, tfidf.shape[1], dense[train], scores[train], k, seed)
            assert fitted.term_weights is not None and fitted.bias is not None
            logits = np.asarray(words[test] @ fitted.term_weights[:width], dtype=np.float64)
            results[k][test] = fitted.best[np.argmax(logits + fitted.bias, axis=1)]
    oof = {k: float(scores[np.arange(n), inc].mean()) for k, inc in results.items()}
    if not oof:
        return 0, np.zeros(n, dtype=np.int64), {}
    best = max(oof, key=lambda k: (oof[k], -k))
    return best, results[best], oof
