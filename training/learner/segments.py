"""Task segments: when the training data names each row's task, the best model of the prompt's
predicted task — and within the task, of its sub-cluster — is the incumbent the policy table
can fall back on, as the cluster-best model is (``clusters.py``).

Why: prompts of different tasks can share a format (MMLU and ARC are both four-option multiple
choice), so k-means on the whole data can merge two tasks whose best models differ; the task
column says where they part. Within a task, subjects (MMLU's 57) can each have their own best
model: per task, k-means sub-clusters with their own best, shrunk toward the task's means
(``SMOOTHING_ROWS``), their number chosen by an inner cross-validation on the training rows'
folds with k = 1 (the task's best) always a candidate.

Serving: the task is the argmax of a complement naive Bayes classifier's scores on the prompt's
TF-IDF vector (a gather of the prompt's terms from a (vocabulary, tasks) matrix and a product),
the sub-segment the nearest of that task's centroids in the standardised dense features. *Why
naive Bayes:* its fit is one pass over the rows (a multinomial logistic regression on the TF-IDF
and dense features took 140 CPU s for its five out-of-fold fits on 3,000 MMLU prompts with 57
tasks), it picks out rare words that only one task uses, and on the tests' generated data it told
two tasks in one format apart out of fold on every row where the logistic regression missed 3-6%.
Whether tasks serve at all is chosen out of fold beside the k-means clusters
(``segments_out_of_fold``: each fold's classifier, task bests, sub-cluster numbers and
centroids fitted without it).

Subtasks (``parent/child`` labels, ``task_labels.py``) are task segments over the children whose
means are shrunk toward their parent's (``parent_of``, ``_group_priors``) and whose classifier
decides the parent first (``_nested_classifier``), a family of their own (``SUBTASKS_FAMILY``)
beside the parent-level tasks.

Without a task column the same sub-clusters refine the global k-means clusters instead
(``CLUSTERS_FAMILY``, ``cluster_segments_fit``): the top level is the nearest of the k
clusters' centroids, no classifier. *Why:* subjects inside one task (MMLU's) with their own best
models otherwise need a large global k, which splits every other task as well and loses out of
fold; here each cluster chooses its own number of sub-clusters, 1 where splitting does not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from training.learner.clusters import (
    K_GRID,
    ROWS_PER_CLUSTER,
    SMOOTHING_ROWS,
    centroid_distances,
    kmeans_centroids,
    nearest,
    standardisation,
)

TASKS_FAMILY = "tasks"  # the family's name among the clusters' k (``ClusterChoice``)
SUBTASKS_FAMILY = "subtasks"  # ``parent/child`` task labels' children (``task_labels.py``)
CLUSTERS_FAMILY = "clusters+sub"  # global k-means clusters refined by sub-clusters
TOP_CLASSIFIER, TOP_CENTROIDS = "classifier", "centroids"  # how a prompt's top group is found
SUB_GRID = (1, 2, 4, 8)  # sub-clusters tried per task (1: the task's best model)
MAX_TASKS = 64  # past this many tasks the rarest are pooled into one
NB_ALPHA = 0.1  # additive smoothing of the task classifier's term counts
NEVER = -1e9  # the logit bias of a task the classifier saw no row of
# Subtasks: the parent classifier's logits count this many times the children's, so a prompt's
# parent decides first. Why two stages: on the semi-synthetic subtopics (MMLU/ARC/MBPP keyword
# families, seed 0) one classifier over the 12 children was right on 64% of held-out prompts and
# its incumbents 0.003 above the per-task floor; parent then child, 72% and 0.015 above.
PARENT_WEIGHT = 100.0
# Top-level groups a fit makes at most: ``task_ids`` pools tasks past MAX_TASKS into the last,
# clusters+sub's top k is one of K_GRID; a stored version with more is refused at load.
MAX_GROUPS = max(MAX_TASKS, K_GRID[-1])
ARRAYS = ("mean", "scale", "centroids", "owner", "best")  # both kinds of top level
_DTYPES = {"term_weights": np.float32, "owner": np.int64, "best": np.int64}  # else float64
TOP_ARRAYS = {TOP_CLASSIFIER: ("term_weights", "bias"), TOP_CENTROIDS: ("top_centroids",)}


@dataclass(frozen=True)
class PromptSegments:
    """The prompt's top-level group — its predicted task (a linear rule on the TF-IDF vector)
    or its nearest global cluster — then the nearest of the group's sub-centroids; each
    sub-segment's best model."""

    mean: np.ndarray  # (d,) dense features' standardisation
    scale: np.ndarray  # (d,)
    centroids: np.ndarray  # (segments, d) in standardised units
    owner: np.ndarray  # (segments,) the top-level group each sub-segment belongs to
    best: np.ndarray  # (segments,) model index
    # Top level by classifier: (vocabulary, groups) float32 TF-IDF weights and (groups,) bias.
    term_weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    top_centroids: np.ndarray | None = None  # or by centroid: (groups, d) standardised

    @property
    def top(self) -> str:
        return TOP_CLASSIFIER if self.top_centroids is None else TOP_CENTROIDS

    def _segments(self, term_logits: np.ndarray | None, dense: np.ndarray) -> np.ndarray:
        scaled = (np.atleast_2d(dense) - self.mean) / self.scale
        if term_logits is not None:  # by the classifier (``term_weights``)
            group = np.argmax(np.atleast_2d(term_logits) + self.bias, axis=1)
        else:
            group = nearest(scaled, np.asarray(self.top_centroids))
        distance = centroid_distances(scaled, self.centroids)
        distance = np.where(self.owner == group[:, None], distance, np.inf)
        return np.asarray(np.argmin(distance, axis=1), dtype=np.int64)

    def incumbents_many(self, tfidf: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
        """The best model of each row's segment, from its TF-IDF row and dense features."""
        term_logits = None
        if self.term_weights is not None:
            term_logits = np.asarray(tfidf @ self.term_weights, dtype=np.float64)
        return np.asarray(self.best[self._segments(term_logits, dense)], dtype=np.int64)

    def incumbent_one(self, index: np.ndarray, values: np.ndarray, dense: np.ndarray) -> int:
        """One prompt's: ``index``/``values`` are its TF-IDF row (``Featurizer.tfidf``)."""
        term_logits = None
        if self.term_weights is not None:
            term_logits = values @ np.take(self.term_weights, index, axis=0)
        return int(self.best[self._segments(term_logits, dense)[0]])

    def to_arrays(self) -> dict[str, np.ndarray]:
        names = (*ARRAYS, *TOP_ARRAYS[self.top])
        return {f"segment_{name}": getattr(self, name) for name in names}


def segments_from_arrays(
    arrays: dict[str, np.ndarray], vocabulary: int, dense_size: int, models: int, top: str
) -> PromptSegments:
    """Stored segments whose top level is ``top`` (``TOP_ARRAYS``), refused (``ValueError``)
    unless every array has the dtype, shape and index range the version's featurizer and models
    allow."""
    if top not in TOP_ARRAYS:
        raise ValueError(f"an unknown top level {top!r}")
    loaded = {}
    for name in (*ARRAYS, *TOP_ARRAYS[top]):
        array = arrays.get(f"segment_{name}")
        if array is None:
            raise ValueError(f"segment_{name} is missing")
        integral = name in ("owner", "best")
        if array.dtype.kind != ("i" if integral else "f"):
            raise ValueError(f"segment_{name} has dtype {array.dtype}")
        # Checked after the cast: a finite float64 past float32's range becomes inf in it.
        with np.errstate(over="ignore"):
            array = np.asarray(array, dtype=_DTYPES.get(name, np.float64))
        if not integral and not np.isfinite(array).all():
            raise ValueError(f"segment_{name} is not finite")
        loaded[name] = array
    top_array = loaded["bias" if top == TOP_CLASSIFIER else "top_centroids"]
    groups, count = top_array.shape[0] if top_array.ndim >= 1 else 0, loaded["best"].size
    if groups > MAX_GROUPS or count > MAX_GROUPS * SUB_GRID[-1]:
        raise ValueError(f"{groups} groups and {count} sub-segments: more than training makes")
    shapes = {
        "mean": (dense_size,),
        "scale": (dense_size,),
        "term_weights": (vocabulary, groups),
        "bias": (groups,),
        "top_centroids": (groups, dense_size),
        "centroids": (count, dense_size),
        "owner": (count,),
        "best": (count,),
    }
    for name in loaded:
        if loaded[name].shape != shapes[name]:
            raise ValueError(f"segment_{name} is {loaded[name].shape}, expected {shapes[name]}")
    owner, best = loaded["owner"], loaded["best"]
    if not groups or (loaded["scale"] <= 0).any() or (best < 0).any() or (best >= models).any():
        raise ValueError("segments without groups, with a zero scale or an unknown model")
    if (owner < 0).any() or (owner >= groups).any() or len(np.unique(owner)) != groups:
        raise ValueError("a sub-segment of no group, or a group without sub-segments")
    if np.bincount(owner).max() > SUB_GRID[-1]:
        raise ValueError(f"a group with more than {SUB_GRID[-1]} sub-segments")
    return PromptSegments(**loaded)


def task_ids(tasks: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each row's task index (most rows first) and the task names; past ``MAX_TASKS`` tasks
    the rarest are pooled as one."""
    names, inverse, counts = np.unique(
        np.asarray(tasks, dtype=str), return_inverse=True, return_counts=True
    )
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    kept = [str(names[i]) for i in order]
    if len(kept) > MAX_TASKS:
        kept = [*kept[: MAX_TASKS - 1], "(other tasks)"]
    return np.minimum(rank[inverse.ravel()], MAX_TASKS - 1), kept


def _shrunk_means(scores: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Rows' mean scores per model shrunk toward ``prior`` by ``SMOOTHING_ROWS`` rows."""
    return np.asarray(
        (scores.sum(axis=0) + SMOOTHING_ROWS * prior) / (len(scores) + SMOOTHING_ROWS)
    )


def _classifier(
    tfidf: sparse.csr_matrix, task: np.ndarray, tasks: int
) -> tuple[np.ndarray, np.ndarray]:
    """(term weights, bias) of a task classifier fitted on these rows."""
    from sklearn.naive_bayes import ComplementNB  # fit-time only

    term = np.zeros((tfidf.shape[1], tasks), dtype=np.float32)
    bias = np.full(tasks, NEVER)
    present = np.unique(task)
    bias[present] = 0.0
    if len(present) > 1:
        # ComplementNB's decision for two classes or more: argmax of X @ feature_log_prob_.T.
        model = ComplementNB(alpha=NB_ALPHA).fit(tfidf, task)
        term[:, present] = np.asarray(model.feature_log_prob_).T
    return term, bias


def _nested_classifier(
    tfidf: sparse.csr_matrix, task: np.ndarray, tasks: int, parent_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(term weights, bias) of subtasks as one linear rule: ``PARENT_WEIGHT`` times the parent
    classifier's (fitted on every row) plus each parent's own classifier of its children
    (fitted on its rows alone), so the argmax is in effect the parent's, then its child's."""
    parent_of = np.where(parent_of >= 0, parent_of, parent_of.max() + 1 + np.arange(tasks))
    row_parent = parent_of[task]
    parent_term, parent_bias = _classifier(tfidf, row_parent, int(parent_of.max()) + 1)
    term = PARENT_WEIGHT * parent_term[:, parent_of].astype(np.float64)
    bias = PARENT_WEIGHT * parent_bias[parent_of]
    for parent in np.unique(parent_of):
        children = np.flatnonzero(parent_of == parent)
        rows = row_parent == parent
        local = np.searchsorted(children, task[rows])
        child_term, child_bias = _classifier(tfidf[rows], local, len(children))
        term[:, children] += child_term
        bias[children] += child_bias
    return term.astype(np.float32), bias


def _task_segments(
    scaled: np.ndarray, scores: np.ndarray, prior: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One task's sub-centroids (k, d) and their best models (shrunk toward the task's
    ``prior`` means); k = 1 is the task's best model alone."""
    task_means = _shrunk_means(scores, prior)
    if k <= 1:
        return np.zeros((1, scaled.shape[1])), np.array([int(np.argmax(task_means))])
    centroids = kmeans_centroids(scaled, k, seed)
    labels = nearest(scaled, centroids)
    best = [int(np.argmax(_shrunk_means(scores[labels == c], task_means))) for c in range(k)]
    return centroids, np.asarray(best, dtype=np.int64)


def _sub_clusters_choose(
    scaled: np.ndarray,
    scores: np.ndarray,
    fold_of: np.ndarray,
    priors: dict[int, np.ndarray],
    seed: int,
) -> int:
    """One task's number of sub-clusters whose best models score highest over its rows'
    folds, each fitted on the others with the others' overall means ``priors[fold]`` as the
    final fit shrinks toward every row's (ties go to fewer; 1 when there are too few folds)."""
    folds = np.unique(fold_of)
    if len(folds) < 2:
        return 1
    smallest_train = len(scores) - int(np.bincount(fold_of).max())
    totals: dict[int, float] = {}
    for k in SUB_GRID:
        if k > 1 and k * ROWS_PER_CLUSTER > smallest_train:
            break
        total = 0.0
        for fold in folds:
            train, test = fold_of != fold, fold_of == fold
            prior = priors[int(fold)]
            centroids, best = _task_segments(scaled[train], scores[train], prior, k, seed)
            total += float(scores[test, best[nearest(scaled[test], centroids)]].sum())
        totals[k] = total
    return max(totals, key=lambda k: (totals[k], -k))


def _group_priors(
    scores: np.ndarray, group: np.ndarray, groups: int, parent_of: np.ndarray | None
) -> np.ndarray:
    """(groups, m) the means each group's bests are shrunk toward: these rows' overall means,
    or with ``parent_of`` (each group's parent, -1: none) the parent's means (its rows' over
    every child of it) shrunk toward the overall ones."""
    overall = scores.mean(axis=0)
    priors = np.tile(overall, (groups, 1))
    if parent_of is None:
        return priors
    row_parent = parent_of[group]
    for parent in np.unique(parent_of[parent_of >= 0]):
        priors[parent_of == parent] = _shrunk_means(scores[row_parent == parent], overall)
    return priors


def _sub_segments(
    scaled: np.ndarray,
    scores: np.ndarray,
    group: np.ndarray,
    groups: int,
    fold_of: np.ndarray,
    seed: int,
    parent_of: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every top-level group's sub-centroids, owners and best models, each group's number of
    sub-clusters chosen over the rows' folds ``fold_of``; a group's means are shrunk toward
    the overall means, or toward its parent's (``_group_priors``)."""
    prior = _group_priors(scores, group, groups, parent_of)
    # The inner CV's candidates are shrunk as the final fit's are (group toward its prior), with
    # priors of the rows outside the inner fold, so its k = 1 is the one served.
    folds = np.unique(fold_of)  # one fold: k = 1 alone, no prior needed
    priors = {
        int(f): _group_priors(scores[fold_of != f], group[fold_of != f], groups, parent_of)
        for f in folds
        if len(folds) > 1
    }
    centroids, owner, best = [], [], []
    for g in range(groups):
        rows = group == g
        if not rows.any():  # a task never predicted (NEVER bias) or an empty cluster
            found = np.zeros((1, scaled.shape[1])), np.array([int(np.argmax(prior[g]))])
        else:
            inner = {f: p[g] for f, p in priors.items()}
            k = _sub_clusters_choose(scaled[rows], scores[rows], fold_of[rows], inner, seed)
            found = _task_segments(scaled[rows], scores[rows], prior[g], k, seed)
        centroids.append(found[0])
        best.append(found[1])
        owner.append(np.full(len(found[1]), g, dtype=np.int64))
    return np.vstack(centroids), np.concatenate(owner), np.concatenate(best).astype(np.int64)


def segments_fit(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    task: np.ndarray,
    tasks: int,
    fold_of: np.ndarray,
    seed: int,
    parent_of: np.ndarray | None = None,
) -> PromptSegments:
    """The task classifier and every task's sub-segments fitted on these rows; each task's
    number of sub-clusters chosen over the rows' folds ``fold_of``. With ``parent_of`` the
    tasks are subtasks (``task_labels.py``), shrunk toward their parent task's means."""
    mean, scale = standardisation(dense)
    if parent_of is None:
        term, bias = _classifier(tfidf, task, tasks)
    else:
        term, bias = _nested_classifier(tfidf, task, tasks, parent_of)
    scaled = (dense - mean) / scale
    found = _sub_segments(scaled, scores, task, tasks, fold_of, seed, parent_of)
    return PromptSegments(mean, scale, *found, term_weights=term, bias=bias)


def cluster_segments_fit(
    dense: np.ndarray, scores: np.ndarray, k: int, fold_of: np.ndarray, seed: int
) -> PromptSegments:
    """K-means with ``k`` clusters on these rows (as ``clusters.clusters_fit``) as the top
    level, and every cluster's sub-segments."""
    mean, scale = standardisation(dense)
    scaled = (dense - mean) / scale
    top = kmeans_centroids(scaled, k, seed)
    found = _sub_segments(scaled, scores, nearest(scaled, top), k, fold_of, seed)
    return PromptSegments(mean, scale, *found, top_centroids=top)


def _out_of_fold(
    fit: Callable[[np.ndarray], PromptSegments],
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    fold_of: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Each row's segment-best model from ``fit(train rows)`` without its fold, and the folds'
    mean number of segments."""
    incumbents = np.zeros(len(dense), dtype=np.int64)
    sizes = []
    for fold in range(int(fold_of.max()) + 1):
        train, test = fold_of != fold, fold_of == fold
        fitted = fit(train)
        incumbents[test] = fitted.incumbents_many(tfidf[test], dense[test])
        sizes.append(len(fitted.best))
    return incumbents, round(float(np.mean(sizes)))


def segments_out_of_fold(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    task: np.ndarray,
    fold_of: np.ndarray,
    seed: int,
    parent_of: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Each row's segment-best model from task segments fitted without its fold (the
    sub-cluster numbers chosen on the other folds alone), and the mean number of segments."""
    tasks = int(task.max()) + 1

    def fit(train: np.ndarray) -> PromptSegments:
        rows = (tfidf[train], dense[train], scores[train], task[train], tasks, fold_of[train])
        return segments_fit(*rows, seed, parent_of)

    return _out_of_fold(fit, tfidf, dense, fold_of)


def cluster_segments_out_of_fold(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    k: int,
    fold_of: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, int]:
    """The same for ``k`` clusters and their sub-segments, both fitted without the fold."""

    def fit(train: np.ndarray) -> PromptSegments:
        return cluster_segments_fit(dense[train], scores[train], k, fold_of[train], seed)

    return _out_of_fold(fit, tfidf, dense, fold_of)
