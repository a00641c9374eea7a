"""Fit a router: featurize, k-fold out-of-fold predictions, calibration, then the final fit.

``router_fit`` reports its stage and progress through a callback, which may raise to cancel
the run between folds and models (the Celery task uses it for heartbeats and cancellation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
from scipy import sparse

from training.learner import calibration
from training.learner.clusters import (
    ClusterChoice,
    Family,
    PromptClusters,
    clusters_choose,
    clusters_fit,
)
from training.learner.featurizer import FeaturizerConfig, featurizer_fit
from training.learner.nested import NestedEvaluation, nested_evaluation
from training.learner.router import (
    KIND_BINARY,
    KIND_CONSTANT,
    KIND_REGRESSION,
    ScoreHead,
    TrainedRouter,
    mix_keys,
)
from training.learner.segments import (
    CLUSTERS_FAMILY,
    MAX_TASKS,
    SUBTASKS_FAMILY,
    TASKS_FAMILY,
    PromptSegments,
    cluster_segments_fit,
    cluster_segments_out_of_fold,
    segments_fit,
    segments_out_of_fold,
    task_ids,
)
from training.learner.task_hint import TaskHint, task_hint_fit
from training.learner.task_labels import (
    has_subtasks,
    parent_index,
    subtasks_capped,
    task_levels,
)

Progress = Callable[[str, float], None]  # (stage, overall progress 0..1)

STAGE_FEATURIZING = "featurizing"
STAGE_CROSS_VALIDATING = "cross_validating"
STAGE_FITTING = "fitting"
# Share of the overall progress bar each stage ends at.
_STAGE_END = {STAGE_FEATURIZING: 0.2, STAGE_CROSS_VALIDATING: 0.75, STAGE_FITTING: 0.9}


@dataclass(frozen=True)
class TrainerConfig:
    folds: int = 5
    seed: int = 0
    boost_rounds: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 7
    linear_c: float = 0.3  # inverse L2 strength of the logistic head
    ridge_alpha: float = 1.0
    threads: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 4)))
    # Below this many rows LightGBM runs single-threaded: its OpenMP threads spin-wait, and
    # on a busy 2-core machine two threads on small data were several times slower than one.
    min_rows_per_thread: int = 4000
    # Rows past which ``router_fit_sampled`` fits everything but the LightGBM heads on a uniform
    # sample (training/learner/sampling.py).
    sample_rows: int = 50_000
    featurizer: FeaturizerConfig = field(default_factory=FeaturizerConfig)


@dataclass
class TrainingData:
    """Rows to learn from; scores are oriented so that higher is better, without gaps."""

    prompts: list[str]
    models: list[str]
    scores: np.ndarray  # (n, m)
    costs: np.ndarray  # (n, m), USD per request
    binary: list[bool]  # per model: scores are 0/1
    # False when the costs are only a stand-in (rank-based): ties then never go to "cheaper".
    costs_known: bool = True
    # each row's task when the dataset names one: report slices, and task segments (segments.py)
    tasks: list[str] | None = None
    # each row's parent task (``task_labels.py``: where a label's level is); None: each label
    # splits at its first "/"
    task_parents: list[str] | None = None


@dataclass
class FitResult:
    router: TrainedRouter
    oof_predicted: np.ndarray  # (n, m) shrunk out-of-fold predictions
    folds: int
    # (n,) each row's cluster- or segment-best model fitted without its fold; None when the
    # overall best model won
    oof_incumbents: np.ndarray | None = None
    # The rows of the data the out-of-fold arrays cover (a sorted sample); None: every row
    oof_rows: np.ndarray | None = None
    # The same rows decided by choices made without their fold (nested.py): what a
    # cross-validated report scores
    nested: NestedEvaluation | None = None
    # the out-of-fold choice of the incumbents' family (clusters, task segments or none); the
    # report's evaluation.incumbents
    families: ClusterChoice | None = None


def _fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(n)
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(n) % folds
    return ids


def booster_fit(
    dense: np.ndarray, target: np.ndarray, binary: bool, cfg: TrainerConfig
) -> lgb.Booster:
    """The LightGBM head on the dense features."""
    n = len(target)
    params = {
        "objective": "binary" if binary else "regression",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": int(max(3, min(80, n // 100))),
        "feature_fraction": 0.7,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "num_threads": max(1, min(cfg.threads, n // cfg.min_rows_per_thread)),
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(dense, target), num_boost_round=cfg.boost_rounds)


def _fit_parts(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    target: np.ndarray,
    binary: bool,
    cfg: TrainerConfig,
) -> tuple[str, np.ndarray, float, lgb.Booster | None]:
    """(kind, linear coef, intercept, booster) for one candidate on some rows."""
    from sklearn.linear_model import LogisticRegression, Ridge  # fit-time only

    width = tfidf.shape[1]
    if len(np.unique(target)) < 2:
        return KIND_CONSTANT, np.zeros(width, dtype=np.float32), 0.0, None
    booster = booster_fit(dense, target, binary, cfg)
    if binary:
        linear = LogisticRegression(C=cfg.linear_c, max_iter=300)
        linear.fit(tfidf, target.astype(np.int64))
        coef, intercept = linear.coef_.ravel(), float(linear.intercept_[0])
        kind = KIND_BINARY
    else:
        ridge = Ridge(alpha=cfg.ridge_alpha)
        ridge.fit(tfidf, target)
        coef, intercept = np.asarray(ridge.coef_).ravel(), float(ridge.intercept_)
        kind = KIND_REGRESSION
    return kind, coef.astype(np.float32), intercept, booster


def router_fit(
    data: TrainingData, config: TrainerConfig | None = None, progress: Progress | None = None
) -> FitResult:
    """Train a router on ``data`` and return it with its out-of-fold predictions."""
    cfg = config or TrainerConfig()
    report: Progress = progress or (lambda stage, value: None)
    n = len(data.prompts)
    report(STAGE_FEATURIZING, 0.0)
    featurizer, tfidf, dense = featurizer_fit(data.prompts, cfg.featurizer)
    report(STAGE_FEATURIZING, _STAGE_END[STAGE_FEATURIZING])

    folds = max(2, min(cfg.folds, n // 5))
    fold_of = _fold_ids(n, folds, cfg.seed)
    parts = _out_of_fold_parts(data, tfidf, dense, fold_of, folds, cfg, report)
    calibrated = calibration.calibrate(parts, data.scores, np.arange(n))
    clusters, segments, choice = _incumbent_family(tfidf, dense, data, fold_of, cfg.seed)
    incumbents = None if choice.k == 1 else choice.oof_incumbents
    mean_costs = data.costs.mean(axis=0)
    keys = mix_keys(data.prompts)
    policy = calibration.policy_table(
        calibrated.predicted,
        data.scores,
        data.costs,
        mean_costs,
        data.costs_known,
        keys,
        incumbents,
    )
    heads = _final_heads(data, tfidf, dense, calibrated, cfg, report)
    router = TrainedRouter(
        models=list(data.models),
        featurizer=featurizer,
        heads=heads,
        mean_costs=mean_costs,
        tradeoffs=policy.tradeoffs,
        lambdas=policy.lambdas,
        offsets=policy.offsets,
        mixes=policy.mixes,
        clusters=clusters,
        cluster_bonus=None if incumbents is None else policy.bonuses,
        segments=segments,
    )
    nested = nested_evaluation(
        router, parts, data.scores, data.costs, data.costs_known, keys, fold_of, choice
    )
    router.task_hint = _task_hint(router, data, calibrated.predicted, fold_of, keys, incumbents)
    return FitResult(
        router=router,
        oof_predicted=calibrated.predicted,
        folds=folds,
        oof_incumbents=incumbents,
        nested=nested,
        families=choice,
    )


def _task_hint(
    router: TrainedRouter,
    data: TrainingData,
    oof_predicted: np.ndarray,
    fold_of: np.ndarray,
    keys: np.ndarray,
    incumbents: np.ndarray | None,
) -> TaskHint | None:
    """The task-hint blend where the data names tasks and its decisions at tradeoff 0
    (``TrainedRouter.choose_hinted_many``) beat the router's own (its policy, out-of-fold
    incumbents) out of fold (``task_hint.py``)."""
    if data.tasks is None:
        return None
    return task_hint_fit(
        data.tasks,
        data.task_parents,
        data.scores,
        oof_predicted,
        fold_of,
        (
            lambda predicted: router.choose_many(predicted, 0.0, keys, incumbents),
            lambda hinted: router.choose_hinted_many(hinted, 0.0),
        ),
    )


def _out_of_fold_parts(
    data: TrainingData,
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    fold_of: np.ndarray,
    folds: int,
    cfg: TrainerConfig,
    report: Progress,
) -> np.ndarray:
    """Each row's two raw head parts per model (n, m, 2), from heads fitted without its fold."""
    n, m = data.scores.shape
    parts = np.zeros((n, m, 2))
    steps, done = folds * m, 0
    for fold in range(folds):
        train, test = fold_of != fold, fold_of == fold
        for j in range(m):
            target = data.scores[train, j]
            kind, coef, intercept, booster = _fit_parts(
                tfidf[train], dense[train], target, data.binary[j], cfg
            )
            head = ScoreHead(kind, float(target.mean()), 0.5, 1.0, coef, intercept, booster)
            parts[test, j] = head.raw_parts_many(tfidf[test], dense[test])
            done += 1
            start = _STAGE_END[STAGE_FEATURIZING]
            report(
                STAGE_CROSS_VALIDATING,
                start + (_STAGE_END[STAGE_CROSS_VALIDATING] - start) * done / steps,
            )
    return parts


def _final_heads(
    data: TrainingData,
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    calibrated: calibration.Calibrated,
    cfg: TrainerConfig,
    report: Progress,
) -> list[ScoreHead]:
    """One head per model fitted on every row, with its out-of-fold blend and shrinkage."""
    m = data.scores.shape[1]
    heads: list[ScoreHead] = []
    for j in range(m):
        kind, coef, intercept, booster = _fit_parts(
            tfidf, dense, data.scores[:, j], data.binary[j], cfg
        )
        prior, blend, shrink = calibrated.priors[j], calibrated.blends[j], calibrated.shrinks[j]
        heads.append(ScoreHead(kind, float(prior), blend, shrink, coef, intercept, booster))
        start = _STAGE_END[STAGE_CROSS_VALIDATING]
        report(STAGE_FITTING, start + (_STAGE_END[STAGE_FITTING] - start) * (j + 1) / m)
    return heads


def _incumbent_family(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    data: TrainingData,
    fold_of: np.ndarray,
    seed: int,
) -> tuple[PromptClusters | None, PromptSegments | None, ClusterChoice]:
    """The incumbents served — k-means clusters, task segments (or subtask segments) when the
    data names two tasks or more, else clusters refined by sub-clusters, or none (the overall
    best model) — fitted on every row, and the out-of-fold choice between them
    (``ClusterChoice``)."""
    from threadpoolctl import threadpool_limits  # fit-time only

    scores = data.scores
    # One thread: k-means' OpenMP threads spin-wait on a busy machine (see min_rows_per_thread).
    with threadpool_limits(limits=1):
        choice = clusters_choose(dense, scores, fold_of, seed)
        top_k = choice.top_k()
        finals: dict[Family, Callable[[], PromptSegments]] = {}
        if data.tasks is not None:
            labels = task_levels(data.tasks, data.task_parents)
            choice, finals = _task_families(tfidf, dense, labels, scores, fold_of, seed, choice)
        if not finals and top_k:
            incumbents, size = cluster_segments_out_of_fold(
                tfidf, dense, scores, top_k, fold_of, seed
            )
            # More segments than its k clusters even where no cluster splits: a tie keeps them.
            size = max(size, top_k + 1)
            choice = choice.with_family(CLUSTERS_FAMILY, incumbents, size, scores)
            finals[CLUSTERS_FAMILY] = lambda: cluster_segments_fit(
                dense, scores, top_k, fold_of, seed
            )
        if choice.k in finals:
            return None, finals[choice.k](), choice
        if not isinstance(choice.k, int) or choice.k <= 1:
            return None, None, choice
        return clusters_fit(dense, scores, choice.k, seed), None, choice


def _task_families(
    tfidf: sparse.csr_matrix,
    dense: np.ndarray,
    labels: tuple[list[str], list[str]],
    scores: np.ndarray,
    fold_of: np.ndarray,
    seed: int,
    choice: ClusterChoice,
) -> tuple[ClusterChoice, dict[Family, Callable[[], PromptSegments]]]:
    """The choice with the task families as candidates — tasks (the labels' parent level) when
    there are two or more, subtasks (``parent/child``, ``task_labels.py``) when a parent has two
    children or more — and the final fit of each candidate. Subtasks have more segments than
    the tasks, so a tie keeps the tasks: subtasks serve only where they win out of fold.
    ``labels``: each row's (parent task, label) lists (``task_levels``)."""
    finals: dict[Family, Callable[[], PromptSegments]] = {}
    parents, leaves = labels
    task, names = task_ids(parents)
    tasks_size = 0
    if len(names) >= 2:
        found = segments_out_of_fold(tfidf, dense, scores, task, fold_of, seed)
        incumbents, tasks_size, reading = found
        choice = choice.with_family(TASKS_FAMILY, incumbents, tasks_size, scores, reading.summary())
        finals[TASKS_FAMILY] = lambda: segments_fit(
            tfidf, dense, scores, task, len(names), fold_of, seed, reading=reading
        )
    if has_subtasks(leaves, parents):
        capped = subtasks_capped(leaves, MAX_TASKS, parents)
        leaf, leaf_names = task_ids(capped)
        parent_of = parent_index(leaf_names, names, dict(zip(capped, parents, strict=True)))
        fit = (tfidf, dense, scores, leaf)
        incumbents, size, leaf_reading = segments_out_of_fold(*fit, fold_of, seed, parent_of)
        size = max(size, tasks_size + 1)
        choice = choice.with_family(
            SUBTASKS_FAMILY, incumbents, size, scores, leaf_reading.summary(nested=True)
        )
        finals[SUBTASKS_FAMILY] = lambda: segments_fit(
            *fit, len(leaf_names), fold_of, seed, parent_of, leaf_reading
        )
    return choice, finals


__all__ = [
    "KIND_BINARY",
    "KIND_REGRESSION",
    "FitResult",
    "TrainerConfig",
    "TrainingData",
    "router_fit",
]
