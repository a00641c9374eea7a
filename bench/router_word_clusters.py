"""Without a task column, do clusters of the prompts' content words recover tasks better than
k-means on the dense features? A probe of the incumbent floor, not built into the learner.

    nice .venv/bin/python -m bench.router_word_clusters --datasets ../shared/datasets

The router's incumbents without a task column come from k-means on the standardised dense
features (``clusters.py``: SVD of the whole prompt plus its surface statistics). Where two tasks
share a layout (``bench.router_semisynthetic``'s ``task+mc``: ARC in MMLU's layout) that space
merges them. The alternative measured here: spherical k-means on the featurizer's word TF-IDF
restricted to *content* terms (in at most ``--share`` of the training prompts; ``--char`` adds the
char n-gram block), rows L2-normalised, each cluster's best model shrunk toward the overall means
(``clusters.cluster_best``), k of ``K_GRID`` chosen out of fold like the k-means clusters' on the
trainer's folds. Per scenario and seed (the semi-synthetic generator's labels, splits and rows,
no task column): the router's featurizer fitted on the training prompts, both families' k chosen
out of fold, refitted on every training row, and their floors (each test prompt's cluster-best
model) scored on the test rows against the per-task floor; paired bootstrap 95% intervals on the
pooled test rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from bench import router_semisynthetic as semisynth
from training.learner import metrics
from training.learner.clusters import (
    K_GRID,
    KMEANS_INITS,
    KMEANS_MAX_ROWS,
    ROWS_PER_CLUSTER,
    cluster_best,
    clusters_choose,
    clusters_fit,
)
from training.learner.featurizer import featurizer_fit
from training.learner.trainer import _fold_ids

ITERATIONS = 30


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.csr_matrix(sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix)


def _seeds(x: sparse.csr_matrix, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ on cosine distance (1 - the row's best similarity so far)."""
    centroids = [np.asarray(x[int(rng.integers(x.shape[0]))].todense()).ravel()]
    best = np.asarray(x @ centroids[0]).ravel()
    for _ in range(1, k):
        distance = np.maximum(1.0 - best, 0.0)
        total = distance.sum()
        pick = int(rng.choice(x.shape[0], p=distance / total)) if total > 0 else 0
        centroids.append(np.asarray(x[pick].todense()).ravel())
        best = np.maximum(best, np.asarray(x @ centroids[-1]).ravel())
    return np.vstack(centroids)


def spherical_kmeans(x: sparse.csr_matrix, k: int, seed: int) -> np.ndarray:
    """Unit centroids (k, width) of unit rows, on a seeded sample; best of KMEANS_INITS starts."""
    rng = np.random.default_rng(seed)
    sample = x[rng.permutation(x.shape[0])[:KMEANS_MAX_ROWS]]
    best_total, best = -np.inf, np.zeros((k, x.shape[1]))
    for _ in range(KMEANS_INITS):
        centroids, labels = _seeds(sample, k, rng), np.full(sample.shape[0], -1)
        for _ in range(ITERATIONS):
            new = np.argmax(np.asarray(sample @ centroids.T), axis=1)
            if (new == labels).all():
                break
            labels = new
            member = sparse.csr_matrix(
                (np.ones(len(labels)), (labels, np.arange(len(labels)))),
                shape=(k, sample.shape[0]),
            )
            sums = np.asarray((member @ sample).todense())
            norms = np.linalg.norm(sums, axis=1)[:, None]
            centroids = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), centroids)
        total = float(np.asarray(sample @ centroids.T).max(axis=1).sum())
        if total > best_total:
            best_total, best = total, centroids
    return best


class WordClusters:
    """Spherical k-means on the content terms (df share <= ``share``) of the first ``width``
    columns of these rows' TF-IDF, and each cluster's best model."""

    def __init__(
        self, tfidf: sparse.csr_matrix, scores: np.ndarray, k: int, seed: int, share: float
    ) -> None:
        df = np.bincount(tfidf.indices, minlength=tfidf.shape[1])
        self.columns = np.flatnonzero((df > 0) & (df <= share * tfidf.shape[0]))
        content = sparse.csr_matrix(tfidf[:, self.columns])
        self.centroids = spherical_kmeans(_unit_rows(content), k, seed)
        self.best = cluster_best(self.labels(tfidf), scores, k)

    def labels(self, tfidf: sparse.csr_matrix) -> np.ndarray:
        # A row without content terms scores 0 everywhere: cluster 0.
        return np.argmax(np.asarray(tfidf[:, self.columns] @ self.centroids.T), axis=1)

    def incumbents(self, tfidf: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(self.best[self.labels(tfidf)], dtype=np.int64)


def word_k_choose(
    tfidf: sparse.csr_matrix, scores: np.ndarray, fold_of: np.ndarray, share: float
) -> tuple[int, dict[int, float]]:
    """The k of word clusters (>= 2) with the best out-of-fold floor (ties to fewer)."""
    n = len(scores)
    smallest_train = n - int(np.bincount(fold_of).max())
    oof: dict[int, float] = {}
    for k in (k for k in K_GRID if k >= 2 and k * ROWS_PER_CLUSTER <= smallest_train):
        incumbents = np.zeros(n, dtype=np.int64)
        for fold in range(int(fold_of.max()) + 1):
            train, test = fold_of != fold, fold_of == fold
            fitted = WordClusters(tfidf[train], scores[train], k, 0, share)
            incumbents[test] = fitted.incumbents(tfidf[test])
        oof[k] = float(scores[np.arange(n), incumbents].mean())
    return max(oof, key=lambda k: (oof[k], -k)), oof


def run_seed(
    pool: semisynth.Pool, structure: semisynth.Structure, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    labels = semisynth.labels_draw(pool, structure, seed)
    train, test = semisynth.split_rows(pool, args.train, args.test, seed)
    prompts = pool.mc_prompts if structure.mc else pool.prompts
    featurizer, tfidf, dense = featurizer_fit([prompts[i] for i in train])
    test_tfidf, test_dense = featurizer.transform_many([prompts[i] for i in test])
    width = tfidf.shape[1] if args.char else len(featurizer.word_vocab)
    fold_of = _fold_ids(len(train), 5, 0)
    scores, rows = labels[train], np.arange(len(test))
    started = time.process_time()
    choice = clusters_choose(dense, scores, fold_of, 0)
    dense_seconds, started = time.process_time() - started, time.process_time()
    k, oof = word_k_choose(tfidf[:, :width], scores, fold_of, args.share)
    word_seconds = time.process_time() - started
    per_task = semisynth._group_best(scores, pool.tasks[train])
    dense_k = int(choice.k)
    picks = {
        "task_floor": np.array([per_task[t] for t in pool.tasks[test]]),
        "kmeans": clusters_fit(dense, scores, dense_k, 0).incumbents(test_dense),
        "words": WordClusters(tfidf[:, :width], scores, k, 0, args.share).incumbents(
            test_tfidf[:, :width]
        ),
    }
    served = {name: labels[test][rows, chosen] for name, chosen in picks.items()}
    return {
        "served": served,
        "kmeans_k": dense_k,
        "kmeans_oof": round(choice.oof_scores[dense_k], 4),
        "words_k": k,
        "words_oof": round(oof[k], 4),
        "kmeans_cpu_s": round(dense_seconds, 2),
        "words_cpu_s": round(word_seconds, 2),
    }


def _gain(a: np.ndarray, b: np.ndarray) -> str:
    low, high = metrics.bootstrap_interval(a - b)
    return f"{float((a - b).mean()):+.4f} ({low:+.4f} … {high:+.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    names = [s.name for s in semisynth.SCENARIOS]
    parser.add_argument("--scenarios", nargs="+", choices=names, default=["task", "task+mc"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.2, help="content terms' max df share")
    parser.add_argument("--char", action="store_true", help="the char n-gram block as well")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pool = semisynth.prompt_pool(args.datasets)
    result: dict[str, Any] = {}
    for structure in (s for s in semisynth.SCENARIOS if s.name in args.scenarios):
        with threadpool_limits(limits=1):
            runs = [run_seed(pool, structure, seed, args) for seed in args.seeds]
        pooled = {k: np.concatenate([r["served"][k] for r in runs]) for k in runs[0]["served"]}
        result[structure.name] = {
            "mean": {k: round(float(v.mean()), 4) for k, v in pooled.items()},
            "kmeans - task floor": _gain(pooled["kmeans"], pooled["task_floor"]),
            "words - task floor": _gain(pooled["words"], pooled["task_floor"]),
            "words - kmeans": _gain(pooled["words"], pooled["kmeans"]),
            "per_seed": [{k: v for k, v in r.items() if k != "served"} for r in runs],
        }
        print(structure.name, json.dumps(result[structure.name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
