"""Nested cross-validation of every choice made on out-of-fold predictions.

The heads' out-of-fold predictions are honest (each row is scored by heads fitted without its
fold), but the choices made on them — each head's blend weight and shrinkage, the number of
prompt clusters, and the served policy table (which family serves each tradeoff: a single
model, a two-model mix, the full router or the cluster-best form, with its incumbent bonus and
λ) — are made on the same rows a cross-validated report then scores, which flatters the report.
Here each fold's rows are decided by the choices made on the other folds' out-of-fold rows
alone, with the same folds as the heads': the report's curve and its APGR/CPT are computed from
these decisions. (The other folds' predictions still come from heads that saw the evaluated
fold's rows, as in any cross-validated stacking; refitting the heads per outer fold would cost
``folds`` times the training. The same holds for the incumbents' family: the other folds'
out-of-fold clusters and task or sub-cluster segments were fitted on folds that include the
evaluated one, and clusters+sub's top-level k is chosen on every row.) The served router is
unchanged: its choices use every row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from training.learner import calibration
from training.learner.clusters import ClusterChoice
from training.learner.router import TrainedRouter


@dataclass(frozen=True)
class NestedEvaluation:
    predicted: np.ndarray  # (n, m) each row's predictions, blend and shrinkage chosen without it
    picks: np.ndarray  # (tradeoffs, n) each row's model under the policy chosen without its fold
    policy_kinds: list[list[str]]  # per fold: the family each tradeoff's policy came from


def nested_evaluation(
    router: TrainedRouter,
    parts: np.ndarray,
    scores: np.ndarray,
    costs: np.ndarray,
    costs_known: bool,
    keys: np.ndarray,
    fold_of: np.ndarray,
    clusters: ClusterChoice | None,
) -> NestedEvaluation:
    """Decide each fold's rows with blends, shrinkage, clusters and the policy table chosen on
    the other folds' out-of-fold ``parts`` (n, m, 2) only; ``router`` supplies the decision
    rule and the per-model decision costs."""
    n, m = scores.shape
    predicted = np.zeros((n, m))
    picks = np.zeros((len(router.tradeoffs), n), dtype=np.int64)
    kinds: list[list[str]] = []
    for fold in range(int(fold_of.max()) + 1):
        inner, outer = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        calibrated = calibration.calibrate(parts, scores, inner)
        incumbents = None
        if clusters is not None:
            k, chosen = clusters.chosen_on(scores, inner)
            incumbents = None if k == 1 else chosen
        policy = calibration.policy_table(
            calibrated.predicted[inner],
            scores[inner],
            costs[inner],
            router.mean_costs,
            costs_known,
            keys[inner],
            None if incumbents is None else incumbents[inner],
        )
        served = dataclasses.replace(
            router,
            lambdas=policy.lambdas,
            offsets=policy.offsets,
            mixes=policy.mixes,
            cluster_bonus=None if incumbents is None else policy.bonuses,
        )
        for t, tradeoff in enumerate(router.tradeoffs):
            picks[t, outer] = served.choose_many(
                calibrated.predicted[outer],
                float(tradeoff),
                keys[outer],
                None if incumbents is None else incumbents[outer],
            )
        predicted[outer] = calibrated.predicted[outer]
        kinds.append(policy.kinds)
    return NestedEvaluation(predicted, picks, kinds)
