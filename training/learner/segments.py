"""Task segments: when the training data names each row's task, the best model of the prompt's
predicted task — and within the task, of its sub-cluster — is the incumbent the policy table
can fall back on, as the cluster-best model is (``clusters.py``).

Why: prompts of different tasks can share a format (MMLU and ARC are both four-option multiple
choice), so k-means on the whole data can merge two tasks whose best models differ; the task
column says where they part. Within a task, subjects (MMLU's 57) can each have their own best
model: per task, k-means sub-clusters with their own best, shrunk toward the task's means
(``SMOOTHING_ROWS``), their number chosen by an inner cross-validation on the training rows'
folds with k = 1 (the task's best) always a candidate.

Serving: the task classifier (``task_classifier.py``: complement naive Bayes or a multinomial
logistic regression, whichever reads the task better out of fold) is a linear rule on the
prompt's TF-IDF vector (a gather of the prompt's terms from a (vocabulary, tasks) matrix and a
product), the sub-segment the nearest of that task's centroids in the standardised dense
features. The incumbent is the argmax task's sub-segment's best model, or (soft, when it scores
higher out of fold) the model with the highest expected mean under the classifier's posterior
(its logits over a temperature fitted out of fold): a prompt the classifier cannot place between
two tasks gets the model best on both in expectation, not a coin toss between their bests.
Whether tasks serve at all is chosen out of fold beside the k-means clusters
(``segments_out_of_fold``: each fold's classifier, task bests, sub-cluster numbers and
centroids fitted without it).

Subtasks (``parent/child`` labels, ``task_labels.py``) are task segments over the children whose
means are shrunk toward their parent's (``parent_of``, ``_group_priors``) and whose classifier
decides the parent first (``task_classifier.nested_classifier_fit``: naive Bayes in two stages,
no LR), a family of their own (``SUBTASKS_FAMILY``) beside the parent-level tasks; the soft
incumbent weighs their posterior as it does the tasks'.

Without a task column the same sub-clusters refine the global k-means clusters instead
(``CLUSTERS_FAMILY``, ``cluster_segments_fit``): the top level is the nearest of the k
clusters' centroids, no classifier. *Why:* subjects inside one task (MMLU's) with their own best
models otherwise need a large global k, which splits every other task as well and loses out of
fold; here each cluster chooses its own number of sub-clusters, 1 where splitting does not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

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
from training.learner.task_classifier import (
    KIND_NB,
    TaskReading,
    classifier_fit,
    classifier_kinds,
    nested_classifier_fit,
    posterior,
    reading_choose,
)

TASKS_FAMILY = "tasks"  # the family's name among the clusters' k (``ClusterChoice``)
SUBTASKS_FAMILY = "subtasks"  # ``parent/child`` task labels' children (``task_labels.py``)
CLUSTERS_FAMILY = "clusters+sub"  # global k-means clusters refined by sub-clusters
TOP_CLASSIFIER, TOP_CENTROIDS = "classifier", "centroids"  # how a prompt's top group is found
SUB_GRID = (1, 2, 4, 8)  # sub-clusters tried per task (1: the task's best model)
MAX_TASKS = 64  # past this many tasks the rarest are pooled into one
CHUNK_ROWS = 8192  # rows whose incumbents are computed at a time: bounds the memory
# Top-level groups a fit makes at most: ``task_ids`` pools tasks past MAX_TASKS into the last,
# clusters+sub's top k is one of K_GRID; a stored version with more is refused at load.
MAX_GROUPS = max(MAX_TASKS, K_GRID[-1])
ARRAYS = ("mean", "scale", "centroids", "owner", "best")  # both kinds of top level
SOFT_ARRAYS = ("means", "temperature")  # the soft incumbent's, with the classifier alone
TOP_ARRAYS = {TOP_CLASSIFIER: ("term_weights", "bias"), TOP_CENTROIDS: ("top_centroids",)}


@dataclass(frozen=True)
class PromptSegments:
    """The prompt's top-level group — its predicted task (a linear rule on the TF-IDF vector)
    or its nearest global cluster — then the nearest of the group's sub-centroids; each
    sub-segment's best model. With a ``temperature`` (soft incumbent) the best model in
    expectation over the task posterior instead: ``argmax_m Σ_g P(g | prompt) · means[s_g, m]``,
    s_g the prompt's nearest sub-segment of task g."""

    mean: np.ndarray  # (d,) dense features' standardisation
    scale: np.ndarray  # (d,)
    centroids: np.ndarray  # (segments, d) in standardised units
    owner: np.ndarray  # (segments,) the top-level group each sub-segment belongs to
    best: np.ndarray  # (segments,) model index
    # Top level by classifier: (vocabulary, groups) float32 TF-IDF weights and (groups,) bias.
    term_weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    top_centroids: np.ndarray | None = None  # or by centroid: (groups, d) standardised
    means: np.ndarray | None = None  # (segments, models) the shrunk means ``best`` is argmax of
    temperature: np.ndarray | None = None  # (1,) of the logits; None: the argmax task's best
    # Derived from the centroids and owners by ``build``, never stored: the centroids' squared
    # norms (``centroid_distances``' ``square_norms``) and each group's sub-segments (groups,
    # most per group), padded with the group's first. ``replace`` keeps them: change the
    # centroids or owners through ``build``.
    square_norms: np.ndarray = field(kw_only=True, repr=False, compare=False)
    members: np.ndarray = field(kw_only=True, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        mean: np.ndarray,
        scale: np.ndarray,
        centroids: np.ndarray,
        owner: np.ndarray,
        best: np.ndarray,
        **optional: Any,
    ) -> PromptSegments:
        """Segments from their stored arrays (the fields above; ``optional``: the ones with a
        default), with what every lookup derives from them computed once."""
        groups = [np.flatnonzero(owner == g) for g in range(int(owner.max()) + 1)]
        width = max(len(m) for m in groups)
        padded = [np.concatenate([m, np.full(width - len(m), m[0])]) for m in groups]
        members = np.asarray(padded, dtype=np.int64)
        norms = (centroids**2).sum(axis=1)
        arrays = (mean, scale, centroids, owner, best)
        return cls(*arrays, **optional, square_norms=norms, members=members)

    @property
    def top(self) -> str:
        return TOP_CLASSIFIER if self.top_centroids is None else TOP_CENTROIDS

    @property
    def soft(self) -> bool:
        return self.temperature is not None and self.means is not None

    def _incumbents(self, term_logits: np.ndarray | None, dense: np.ndarray) -> np.ndarray:
        """Each row's incumbent, ``CHUNK_ROWS`` rows at a time: the distances (rows, segments)
        and the soft incumbent's (rows, groups, widest group) and (rows, groups, models)
        intermediates would take gigabytes for a 500k-row batch of 64 tasks of 8 sub-segments
        and 11 models taken whole; chunked, their memory does not grow with the rows."""
        dense = np.atleast_2d(dense)
        logits = None if term_logits is None else np.atleast_2d(term_logits)
        found = np.empty(len(dense), dtype=np.int64)
        for start in range(0, len(dense), CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            found[rows] = self._incumbents_of(None if logits is None else logits[rows], dense[rows])
        return found

    def _incumbents_of(self, term_logits: np.ndarray | None, dense: np.ndarray) -> np.ndarray:
        scaled = (dense - self.mean) / self.scale
        distance = centroid_distances(scaled, self.centroids, self.square_norms)
        if term_logits is None:  # by the nearest global cluster (``top_centroids``)
            group = nearest(scaled, np.asarray(self.top_centroids))
        elif self.soft:
            return self._expected_best(term_logits + self.bias, distance)
        else:  # by the classifier (``term_weights``)
            group = np.argmax(term_logits + self.bias, axis=1)
        distance = np.where(self.owner == group[:, None], distance, np.inf)
        return np.asarray(self.best[np.argmin(distance, axis=1)], dtype=np.int64)

    def _expected_best(self, logits: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """The soft incumbent of each row from its logits (n, groups) and sub-centroid
        distances (n, segments)."""
        members = self.members
        nearest_of = np.argmin(distance[:, members], axis=2)  # (n, groups): first on ties
        chosen = np.take_along_axis(members[None], nearest_of[..., None], axis=2)[..., 0]
        weights = posterior(logits, float(np.asarray(self.temperature)[0]))
        expected = np.einsum("ng,ngm->nm", weights, np.asarray(self.means)[chosen])
        return np.asarray(np.argmax(expected, axis=1), dtype=np.int64)

    def incumbents_many(self, tfidf: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
        """The best model of each row's segment, from its TF-IDF row and dense features."""
        term_logits = None
        if self.term_weights is not None:
            term_logits = np.asarray(tfidf @ self.term_weights, dtype=np.float64)
        return self._incumbents(term_logits, dense)

    def incumbent_one(self, index: np.ndarray, values: np.ndarray, dense: np.ndarray) -> int:
        """One prompt's: ``index``/``values`` are its TF-IDF row (``Featurizer.tfidf``)."""
        term_logits = None
        if self.term_weights is not None:
            term_logits = values @ np.take(self.term_weights, index, axis=0)
        return int(self._incumbents(term_logits, dense)[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        names = (*ARRAYS, *TOP_ARRAYS[self.top], *(SOFT_ARRAYS if self.soft else ()))
        return {f"segment_{name}": getattr(self, name) for name in names}


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


def _task_segments(
    scaled: np.ndarray, scores: np.ndarray, prior: np.ndarray, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One task's sub-centroids (k, d), their best models and the shrunk means (k, models)
    they are the argmax of (shrunk toward the task's ``prior`` means); k = 1 is the task's
    best model alone."""
    task_means = _shrunk_means(scores, prior)
    if k <= 1:
        return (
            np.zeros((1, scaled.shape[1])),
            np.array([int(np.argmax(task_means))]),
            task_means[None],
        )
    centroids = kmeans_centroids(scaled, k, seed)
    labels = nearest(scaled, centroids)
    means = np.array([_shrunk_means(scores[labels == c], task_means) for c in range(k)])
    return centroids, np.argmax(means, axis=1).astype(np.int64), means


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
            centroids, best, _ = _task_segments(scaled[train], scores[train], prior, k, seed)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every top-level group's sub-centroids, owners, best models and shrunk means, each
    group's number of sub-clusters chosen over the rows' folds ``fold_of``; a group's means are
    shrunk toward the overall means, or toward its parent's (``_group_priors``)."""
    prior = _group_priors(scores, group, groups, parent_of)
    # The inner CV's candidates are shrunk as the final fit's are (group toward its prior), with
    # priors of the rows outside the inner fold, so its k = 1 is the one served.
    folds = np.unique(fold_of)  # one fold: k = 1 alone, no prior needed
    priors = {
        int(f): _group_priors(scores[fold_of != f], group[fold_of != f], groups, parent_of)
        for f in folds
        if len(folds) > 1
    }
    centroids, owner, best, means = [], [], [], []
    for g in range(groups):
        rows = group == g
        if not rows.any():  # a task never predicted (NEVER bias) or an empty cluster
            found = (
                np.zeros((1, scaled.shape[1])),
                np.array([int(np.argmax(prior[g]))]),
                prior[g][None],
            )
        else:
            inner = {f: p[g] for f, p in priors.items()}
            k = _sub_clusters_choose(scaled[rows], scores[rows], fold_of[rows], inner, seed)
            found = _task_segments(scaled[rows], scores[rows], prior[g], k, seed)
        centroids.append(found[0])
        best.append(found[1])
        means.append(found[2])
        owner.append(np.full(len(found[1]), g, dtype=np.int64))
    return (
        np.vstack(centroids),
        np.concatenate(owner),
        np.concatenate(best).astype(np.int64),
        np.vstack(means),
    )


def segments_fit(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    scores: np.ndarray,
    task: np.ndarray,
    tasks: int,
    fold_of: np.ndarray,
    seed: int,
    parent_of: np.ndarray | None = None,
    reading: TaskReading | None = None,
) -> PromptSegments:
    """The task classifier (``reading``'s kind; naive Bayes by default) and every task's
    sub-segments fitted on these rows, each task's number of sub-clusters chosen over the
    rows' folds ``fold_of``; the soft incumbent when ``reading`` has a temperature. With
    ``parent_of`` the tasks are subtasks (``task_labels.py``): the two-stage naive Bayes rule
    (``nested_classifier_fit``, whatever the kind), means shrunk toward the parent task's."""
    reading = reading or TaskReading()
    mean, scale = standardisation(dense)
    if parent_of is None:
        term, bias = classifier_fit(tfidf, task, tasks, reading.kind)
    elif reading.kind == KIND_NB:
        term, bias = nested_classifier_fit(tfidf, task, tasks, parent_of)
    else:
        raise ValueError(f"subtasks are read by naive Bayes alone, not {reading.kind!r}")
    centroids, owner, best, means = _sub_segments(
        (dense - mean) / scale, scores, task, tasks, fold_of, seed, parent_of
    )
    return PromptSegments.build(
        mean,
        scale,
        centroids,
        owner,
        best,
        term_weights=term,
        bias=bias,
        means=means,
        temperature=None if reading.temperature is None else np.array([reading.temperature]),
    )


def cluster_segments_fit(
    dense: np.ndarray, scores: np.ndarray, k: int, fold_of: np.ndarray, seed: int
) -> PromptSegments:
    """K-means with ``k`` clusters on these rows (as ``clusters.clusters_fit``) as the top
    level, and every cluster's sub-segments."""
    mean, scale = standardisation(dense)
    scaled = (dense - mean) / scale
    top = kmeans_centroids(scaled, k, seed)
    centroids, owner, best, _ = _sub_segments(
        scaled, scores, nearest(scaled, top), k, fold_of, seed
    )
    return PromptSegments.build(mean, scale, centroids, owner, best, top_centroids=top)


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
) -> tuple[np.ndarray, int, TaskReading]:
    """Each row's segment-best model from task segments fitted without its fold (the
    sub-cluster numbers chosen on the other folds alone), the mean number of segments, and the
    task reading (``task_classifier.reading_choose``) those incumbents were served by. Subtasks
    (``parent_of``) keep their two-stage naive Bayes rule: only its temperature is chosen."""
    tasks, n = int(task.max()) + 1, len(dense)
    kinds = classifier_kinds(tfidf, tasks) if parent_of is None else (KIND_NB,)
    logits = {kind: np.zeros((n, tasks)) for kind in kinds}
    fitted: list[tuple[np.ndarray, PromptSegments]] = []
    for fold in range(int(fold_of.max()) + 1):
        train, test = fold_of != fold, fold_of == fold
        rows = (tfidf[train], dense[train], scores[train], task[train], tasks, fold_of[train])
        found = segments_fit(*rows, seed, parent_of)
        for kind in kinds:
            other = kind != KIND_NB  # the fold's segments hold naive Bayes already
            term, bias = (
                classifier_fit(tfidf[train], task[train], tasks, kind)
                if other
                else (found.term_weights, found.bias)
            )
            logits[kind][test] = np.asarray(tfidf[test] @ term) + bias
        # Its incumbents read from given logits (which carry the fold's bias) from now on.
        fitted.append((test, replace(found, bias=np.zeros(tasks))))

    def served(kind_logits: np.ndarray, temperature: float | None) -> np.ndarray:
        soft = None if temperature is None else np.array([temperature])
        incumbents = np.zeros(n, dtype=np.int64)
        for test, found in fitted:
            fold = replace(found, temperature=soft)
            incumbents[test] = fold._incumbents(kind_logits[test], dense[test])
        return incumbents

    reading, incumbents = reading_choose(logits, task, scores, served)
    return incumbents, round(float(np.mean([len(f.best) for _, f in fitted]))), reading


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
