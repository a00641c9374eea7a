"""Segment prior blend, learner-direct (issue 20): an experiment, not shipped (README, "Beating
the per-task floor").

    nice .venv/bin/python -m bench.router_segment_prior --datasets ../shared/datasets \
        --data mmlu --seeds 0 1 2          # or --data quality, or --data semi --scenario task+mc

The idea tested: the per-model heads miss subject specialists (RouteLLM MMLU:
high_school_mathematics, GPT-4 right 3% of the time, Mixtral 32%), so add to each prediction
``beta · (seg_mean(x) - global_mean)``, ``seg_mean(x) = Σ_g P(g | x) · means[g, m]`` the soft
segment mean of the task/subtask family (``training/learner/segments.py``: each fold's segments
fitted without it, the posterior's temperature fitted on the out-of-fold logits), beta from
``BETAS`` chosen by the tradeoff-0 out-of-fold score of the policy table re-chosen on the blended
predictions (ties to 0, the current router). Also measured: the heads shrunk toward the segment
means instead of the global means (``shrink_to_segment``: the shrink factor re-fitted by least
squares around the per-row segment means), and the argmax of the segment means alone.

Everything is fitted on the train rows (``router_fit``, default config, one thread) and scored at
tradeoff 0 on the held-out rows against the per-task (per-subject) floor and the best single
model chosen on the train rows, with paired bootstrap 95% intervals. One JSON line per run.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from training.learner import calibration, metrics
from training.learner.clusters import centroid_distances
from training.learner.router import mix_keys, utilities
from training.learner.segments import MAX_TASKS, PromptSegments, segments_fit, task_ids
from training.learner.task_classifier import posterior, temperature_fit
from training.learner.task_labels import has_subtasks, parent_index, subtasks_capped, task_levels
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Split:
    prompts: list[str]
    scores: np.ndarray  # (n, m) every row
    labels: list[str]  # each row's task label
    train: np.ndarray
    test: np.ndarray
    floor: np.ndarray  # (test,) each test row's per-task (per-subject) best model on train
    name: str


def soft_means(
    seg: PromptSegments, tfidf: Any, dense: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, models) ``Σ_g P(g | x) · means[s_g, m]`` and the classifier's logits."""
    logits = np.asarray(tfidf @ seg.term_weights, dtype=np.float64) + seg.bias
    scaled = (dense - seg.mean) / seg.scale
    distance = centroid_distances(scaled, seg.centroids, seg.square_norms)
    members = seg.members
    nearest_of = np.argmin(distance[:, members], axis=2)
    chosen = np.take_along_axis(members[None], nearest_of[..., None], axis=2)[..., 0]
    weights = posterior(logits, temperature)
    return np.einsum("ng,ngm->nm", weights, np.asarray(seg.means)[chosen]), logits


def family_ids(labels: list[str]) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Each row's segment id, their number and (subtasks) each one's parent, as the trainer's
    ``_task_families`` (labels split at their first "/")."""
    parents, leaves = task_levels(labels, None)
    task, names = task_ids(parents)
    if not has_subtasks(leaves, parents):
        return task, len(names), None
    capped = subtasks_capped(leaves, MAX_TASKS, parents)
    leaf, leaf_names = task_ids(capped)
    parent_of = parent_index(leaf_names, names, dict(zip(capped, parents, strict=True)))
    return leaf, len(leaf_names), parent_of


def segment_means(split: Split, fit: Any, folds: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Out-of-fold soft segment means of the train rows, the test rows' (segments fitted on
    every train row), and the temperature (fitted on the out-of-fold logits)."""
    router, scores = fit.router, split.scores[split.train]
    tfidf, dense = router.featurizer.transform_many([split.prompts[i] for i in split.train])
    seg, count, parent_of = family_ids([split.labels[i] for i in split.train])
    order = np.random.default_rng(0).permutation(len(scores))  # trainer._fold_ids, seed 0
    fold_of = np.empty(len(scores), dtype=np.int64)
    fold_of[order] = np.arange(len(scores)) % folds
    fitted, logits = [], np.zeros((len(scores), count))
    for fold in range(folds):
        a, b = fold_of != fold, fold_of == fold
        fitted.append(
            segments_fit(tfidf[a], dense[a], scores[a], seg[a], count, fold_of[a], 0, parent_of)
        )
        logits[b] = soft_means(fitted[-1], tfidf[b], dense[b], 1.0)[1]
    temperature = temperature_fit(logits, seg)
    oof = np.zeros(scores.shape)
    for fold, found in enumerate(fitted):
        b = fold_of == fold
        oof[b] = soft_means(found, tfidf[b], dense[b], temperature)[0]
    final = segments_fit(tfidf, dense, scores, seg, count, fold_of, 0, parent_of)
    test_tfidf, test_dense = router.featurizer.transform_many(
        [split.prompts[i] for i in split.test]
    )
    return oof, soft_means(final, test_tfidf, test_dense, temperature)[0], temperature


def tradeoff_zero(
    policy: calibration.PolicyTable, predicted: np.ndarray, incumbents: np.ndarray | None
) -> np.ndarray:
    """The policy table's tradeoff-0 picks (no costs, so no mix)."""
    n, m = predicted.shape
    utility = utilities(predicted, np.zeros(m), policy.offsets[0], float(policy.lambdas[0]))
    if policy.bonuses[0] and incumbents is not None:
        utility[np.arange(n), incumbents] += policy.bonuses[0]
    return np.asarray(np.argmax(utility, axis=1))


def _policy(split: Split, predicted: np.ndarray, fit: Any) -> calibration.PolicyTable:
    n, m = predicted.shape
    keys = mix_keys([split.prompts[i] for i in split.train])
    scores = split.scores[split.train]
    return calibration.policy_table(
        predicted, scores, np.ones((n, m)), np.ones(m), False, keys, fit.oof_incumbents
    )


def _shrunk_to_segment(
    split: Split, fit: Any, oof: np.ndarray, test: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The heads shrunk toward the per-row segment means: ``seg + s'·(mixed - seg)``."""
    scores = split.scores[split.train]
    prior = np.array([h.prior for h in fit.router.heads])
    shrink = np.array([h.shrink for h in fit.router.heads])
    mixed = prior + (fit.oof_predicted - prior) / shrink
    mixed_test = prior + (predicted - prior) / shrink
    refit = np.array(
        [
            calibration.shrinkage(mixed[:, j] - oof[:, j], scores[:, j] - oof[:, j], 0.0)
            for j in range(scores.shape[1])
        ]
    )
    return oof + refit * (mixed - oof), test + refit * (mixed_test - test)


def run(split: Split, seed: int) -> dict[str, Any]:
    """One split: the current router's tradeoff-0 score and each variant's."""
    data = TrainingData(
        prompts=[split.prompts[i] for i in split.train],
        models=[f"m{j}" for j in range(split.scores.shape[1])],
        scores=split.scores[split.train],
        costs=np.ones((len(split.train), split.scores.shape[1])),
        binary=[True] * split.scores.shape[1],
        costs_known=False,
        tasks=[split.labels[i] for i in split.train],
    )
    started = time.process_time()
    with threadpool_limits(limits=1):
        fit = router_fit(data, TrainerConfig(threads=1))
        fit_cpu = time.process_time() - started
        oof, seg_test, temperature = segment_means(split, fit, fit.folds)
        test_prompts = [split.prompts[i] for i in split.test]
        predicted = fit.router.predict_many(test_prompts)
        incumbents = fit.router.cluster_incumbents(test_prompts)
        base = fit.router.choose_many(predicted, 0.0, mix_keys(test_prompts), incumbents)
        overall = data.scores.mean(axis=0)
        variants: dict[str, tuple[np.ndarray, np.ndarray]] = {
            f"beta={b}": (
                fit.oof_predicted + b * (oof - overall),
                predicted + b * (seg_test - overall),
            )
            for b in BETAS
        }
        variants["shrink_to_segment"] = _shrunk_to_segment(split, fit, oof, seg_test, predicted)
        found = {}
        for name, (blend_oof, blend_test) in variants.items():
            policy = _policy(split, blend_oof, fit)
            found[name] = (
                tradeoff_zero(policy, blend_oof, fit.oof_incumbents),
                tradeoff_zero(policy, blend_test, incumbents),
                policy.kinds[0],
            )
    return _summary(split, seed, base, found, (oof, seg_test), fit_cpu, temperature)


def _summary(
    split: Split,
    seed: int,
    base: np.ndarray,
    found: dict[str, tuple[np.ndarray, np.ndarray, str]],
    seg: tuple[np.ndarray, np.ndarray],
    fit_cpu: float,
    temperature: float,
) -> dict[str, Any]:
    train, test = split.scores[split.train], split.scores[split.test]
    inner, outer = np.arange(len(train)), np.arange(len(test))
    best = int(np.argmax(train.mean(axis=0)))
    floor = test[outer, split.floor]
    served = test[outer, base]
    oof_score = {name: float(train[inner, got[0]].mean()) for name, got in found.items()}
    chosen = max(
        (f"beta={b}" for b in BETAS), key=lambda k: (round(oof_score[k], 12), -float(k[5:]))
    )
    chosen_served = test[outer, found[chosen][1]]

    def interval(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in metrics.bootstrap_interval(values)]

    return {
        "data": split.name,
        "seed": seed,
        "router": round(float(served.mean()), 4),
        "per_task_floor": round(float(floor.mean()), 4),
        "best_single": round(float(test[:, best].mean()), 4),
        "router_gain_over_floor_ci95": interval(served - floor),
        "beta_chosen_out_of_fold": float(chosen[5:]),
        "with_chosen_beta": round(float(chosen_served.mean()), 4),
        "chosen_gain_over_floor_ci95": interval(chosen_served - floor),
        "chosen_gain_over_best_ci95": interval(chosen_served - test[:, best]),
        "chosen_minus_router_ci95": interval(chosen_served - served),
        "beta_0_identical": bool(np.array_equal(found["beta=0.0"][1], base)),
        "variants": {
            name: {
                "out_of_fold": round(oof_score[name], 4),
                "test": round(float(test[outer, got[1]].mean()), 4),
                "tradeoff_0_family": got[2],
            }
            for name, got in found.items()
        },
        "segment_mean_argmax": {
            "out_of_fold": round(float(train[inner, seg[0].argmax(axis=1)].mean()), 4),
            "test": round(float(test[outer, seg[1].argmax(axis=1)].mean()), 4),
        },
        "temperature": round(temperature, 4),
        "router_fit_cpu_s": round(fit_cpu, 1),
    }


def _floor(
    scores: np.ndarray, labels: list[str], train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    label = np.asarray(labels)
    best = {
        t: int(np.argmax(scores[train][label[train] == t].mean(axis=0)))
        for t in np.unique(label[train])
    }
    return np.array([best[t] for t in label[test]])


def mmlu_split(datasets: Path, seed: int) -> Split:
    """RouteLLM MMLU, ``mmlu/<subject>`` labels (bench/router_mmlu.py), halves within each
    subject (numpy ``default_rng(seed)``), duplicates kept, costs dropped."""
    from bench.router_mmlu import MMLU_PARENT, MMLU_STRONG, MMLU_WEAK, mmlu_subjects

    with (datasets / "routellm_mmlu.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    right = {"True", "1", "1.0"}
    scores = np.array([[float(r[m] in right) for m in (MMLU_WEAK, MMLU_STRONG)] for r in rows])
    subjects = np.asarray(mmlu_subjects(len(rows)))
    rng, held = np.random.default_rng(seed), np.zeros(len(rows), dtype=bool)
    for subject in np.unique(subjects):
        index = np.flatnonzero(subjects == subject)
        rng.shuffle(index)
        held[index[: len(index) // 2]] = True
    labels = [f"{MMLU_PARENT}/{s}" for s in subjects]
    train, test = np.flatnonzero(~held), np.flatnonzero(held)
    prompts = [r["prompt"] for r in rows]
    return Split(
        prompts, scores, labels, train, test, _floor(scores, labels, train, test), "quality_mmlu"
    )


def quality_split(datasets: Path) -> Split:
    """``bench.router``'s ``quality`` rows (ARC + MBPP, 7 cheapest models, train -> test files,
    gaps as 0 as the bench scores them)."""
    import pandas as pd

    from bench.router import QUALITY_MODELS, QUALITY_TASKS, _quality_models

    models = _quality_models(datasets, QUALITY_TASKS, QUALITY_MODELS)
    frames = []
    for part in ("train", "test"):
        files = [pd.read_csv(datasets / f"routerbench_{t}_{part}.csv") for t in QUALITY_TASKS]
        frame = pd.concat([f[["prompt", "eval_name", *models]] for f in files])
        frames.append(frame.drop_duplicates("prompt").fillna(0).reset_index(drop=True))
    whole = pd.concat(frames).reset_index(drop=True)
    scores, labels = whole[models].to_numpy(float), whole["eval_name"].astype(str).tolist()
    train, test = np.arange(len(frames[0])), np.arange(len(frames[0]), len(whole))
    prompts = whole["prompt"].astype(str).tolist()
    return Split(
        prompts, scores, labels, train, test, _floor(scores, labels, train, test), "quality"
    )


def semi_split(datasets: Path, scenario: str, seed: int, subtasks: bool) -> Split:
    """``bench.router_semisynthetic``'s generated labels (2,000 / 1,000 rows), the task column
    or (``subtasks``) the subtopic as a subtask; the floor per task or per subtopic."""
    from bench.router_semisynthetic import reference_picks
    from bench.semisynthetic_labels import (
        SCENARIOS,
        labels_draw,
        prompt_pool,
        split_rows,
        subtask_labels,
    )

    pool = prompt_pool(datasets)
    structure = next(s for s in SCENARIOS if s.name == scenario)
    scores = labels_draw(pool, structure, seed).astype(float)
    train, test = split_rows(pool, 2000, 1000, seed)
    prompts = list(pool.mc_prompts if structure.mc else pool.prompts)
    picks = reference_picks(pool, structure, scores, train, test)
    labels = subtask_labels(pool) if subtasks else pool.tasks.tolist()
    floor = picks["subtopic_floor" if subtasks else "task_floor"]
    name = f"semi:{scenario}:{'subtasks' if subtasks else 'tasks'}"
    return Split(prompts, scores, labels, train, test, floor, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--data", choices=("mmlu", "quality", "semi"), default="mmlu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scenario", default="task+subtopic")
    parser.add_argument("--subtasks", action="store_true", help="semi: subtopics as subtasks")
    args = parser.parse_args()
    for seed in args.seeds:
        if args.data == "mmlu":
            split = mmlu_split(args.datasets, seed)
        elif args.data == "quality":
            split = quality_split(args.datasets)
        else:
            split = semi_split(args.datasets, args.scenario, seed, args.subtasks)
        print(json.dumps(run(split, seed)), flush=True)


if __name__ == "__main__":
    main()
