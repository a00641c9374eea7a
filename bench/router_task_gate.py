"""A per-task gate between the hinted router and the task's floor, learner-direct (issue 20;
README, "Per-task gate").

    nice -n 19 .venv/bin/python -m bench.router_task_gate --datasets ../shared/datasets \
        --seeds 0 1 2 [--folds 5] [--cache /tmp/task_gate]

The idea: with the task known, never fall below the task's floor unless the training rows say
so. Per task, out of fold on each fit's training rows (the trainer's folds), the per-prompt
differences between the router's tradeoff-0 decisions (with the shipped hint blend where the
guard kept it, else the unhinted heads) and the task's best model on the other folds; the router
is kept on a task only where their mean is above zero and at least ``MIN_GAIN_SE`` standard
errors (``gate``), else the task's floor. Two exploratory variants are printed beside it, not
candidates: ``hier`` (a task decisive either way by that test follows its sign, an undecided one
its parent's pooled test) and ``glob`` (the parent's pooled test for every task).

The adoption rule, fixed before any run: ``gate - floor``'s pooled paired bootstrap 95%
interval above zero on all three split seeds, and ``gate - hinted``'s upper bound ≥ 0 on each
(never worse than the shipped hint beyond noise). Each fit is ``router_fit`` (default config,
one thread) on the other folds of ``bench.router_crossfit.fold_ids`` (the service benchmark's
folds) as in ``bench/router_stack_hint.py``; ``--cache`` keeps each fit (pickled) so the policies
can be re-evaluated without refitting. One JSON line per fit, then one pooled per seed.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.router_stack_hint import _training_data
from training.learner import metrics
from training.learner.router import mix_keys
from training.learner.task_hint import MIN_GAIN_SE, gain_accepted, oof_task_means
from training.learner.task_hint_report import (
    _hinted_picks,
    hinted_predictions,
    per_task_floor_picks,
)
from training.learner.trainer import TrainerConfig, _fold_ids, router_fit

POLICIES = ("gate", "hier", "glob")
MAX_CACHE_BYTES = 2 << 30  # a cached fit larger than this is refused before it is read


def _fit(split: tuple[list[int], list[int]], data: tuple[Any, ...]) -> dict[str, Any]:
    """One fit on the ``split``'s training rows, with what the policies need."""
    (tr, te), (prompts, scores, tasks) = split, data
    p, s, t = [prompts[i] for i in tr], scores[tr], [tasks[i] for i in tr]
    t_prompts = [prompts[i] for i in te]
    cfg = TrainerConfig(threads=1)
    fit = router_fit(_training_data(p, s, t), cfg)
    router = fit.router
    return {
        "router": router,
        "oof_predicted": fit.oof_predicted,
        "oof_incumbents": fit.oof_incumbents,
        "fold_of": _fold_ids(len(s), fit.folds, cfg.seed),
        "keys": mix_keys(p),
        "scores": s,
        "tasks": t,
        "t_scores": scores[te],
        "t_tasks": [tasks[i] for i in te],
        "t_keys": mix_keys(t_prompts),
        "t_predicted": router.predict_many(t_prompts),
        "t_incumbents": router.cluster_incumbents(t_prompts),
    }


def _gain_test(diff: np.ndarray) -> int:
    """+1 where the mean of ``diff`` is above zero by >= ``MIN_GAIN_SE`` SEs
    (``gain_accepted``), -1 where it is below zero by as much, else 0."""
    if len(diff) < 2:
        return 0
    if gain_accepted(diff, MIN_GAIN_SE, None) is not None:
        return 1
    return -1 if gain_accepted(-diff, MIN_GAIN_SE, None) is not None else 0


def task_gates(ids: np.ndarray, count: int, diff: np.ndarray) -> dict[str, np.ndarray]:
    """Per task id, whether each policy keeps the router (module doc)."""
    parent = _gain_test(diff) > 0
    tests = np.array([_gain_test(diff[ids == t]) for t in range(count)])
    return {
        "gate": tests > 0,
        "hier": np.where(tests == 0, parent, tests > 0),
        "glob": np.full(count, parent),
    }


def _router_oof_picks(fit: dict[str, Any], ids: np.ndarray, count: int) -> np.ndarray:
    """The router's out-of-fold tradeoff-0 picks on the training rows, with the kept blend."""
    router, predicted = fit["router"], fit["oof_predicted"]
    hint = router.task_hint
    if hint is not None:
        means = oof_task_means(fit["scores"], ids, count, fit["fold_of"], hint.pseudo_rows)
        predicted = (1 - hint.weight) * predicted + hint.weight * means
        if not hint.own_policy:
            return np.asarray(router.choose_hinted_many(predicted, 0.0))
    return np.asarray(router.choose_many(predicted, 0.0, fit["keys"], fit["oof_incumbents"]))


def evaluate(fit: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One fit's gates (chosen on its training rows) and its test rows' scores per policy."""
    scores, tasks = fit["scores"], fit["tasks"]
    names = sorted(set(tasks))
    index = {name: i for i, name in enumerate(names)}
    ids, count, rows = np.array([index[t] for t in tasks]), len(names), np.arange(len(scores))
    floor_oof = np.argmax(oof_task_means(scores, ids, count, fit["fold_of"], 0.0), axis=1)
    diff = scores[rows, _router_oof_picks(fit, ids, count)] - scores[rows, floor_oof]
    gates = task_gates(ids, count, diff)
    router, t_scores, t_tasks = fit["router"], fit["t_scores"], fit["t_tasks"]
    t_rows = np.arange(len(t_scores))
    hinted, applied = hinted_predictions(router, fit["t_predicted"], list(t_tasks))
    keys, incumbents = fit["t_keys"], fit["t_incumbents"]
    shipped = _hinted_picks(router, hinted, applied, 0.0, keys, incumbents)
    floor = per_task_floor_picks(list(tasks), scores, list(t_tasks))
    known = np.array([index.get(t, -1) for t in t_tasks])
    per_row = {
        "scores": t_scores,
        "hinted": t_scores[t_rows, shipped],
        "floor": t_scores[t_rows, floor],
    }
    for name, keep in gates.items():
        kept = (known >= 0) & keep[np.maximum(known, 0)]
        per_row[name] = t_scores[t_rows, np.where(kept, shipped, floor)]
    hint = router.task_hint
    record = {
        "blend_kept": None if hint is None else {"w": hint.weight, "k": hint.pseudo_rows},
        "oof_router_minus_floor": round(float(diff.mean()), 5),
        "tasks_router_kept": {name: int(keep.sum()) for name, keep in gates.items()},
        "tasks": count,
    }
    return record, per_row


def summary(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Pooled means and paired bootstrap intervals (``metrics.bootstrap_interval``)."""

    def interval(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in metrics.bootstrap_interval(values)]

    out: dict[str, Any] = {k: round(float(rows[k].mean()), 4) for k in ("hinted", "floor")}
    out["hinted_minus_floor_ci95"] = interval(rows["hinted"] - rows["floor"])
    for name in POLICIES:
        out[name] = round(float(rows[name].mean()), 4)
        out[f"{name}_minus_floor_ci95"] = interval(rows[name] - rows["floor"])
        out[f"{name}_minus_hinted_ci95"] = interval(rows[name] - rows["hinted"])
        out[f"{name}_minus_hinted_prompts"] = round(float((rows[name] - rows["hinted"]).sum()))
    return out


def _cached_fit(cache: Path | None, name: str, make: Any) -> dict[str, Any]:
    path = None if cache is None else cache / f"{name}.pkl"
    if path is not None and path.exists():
        if path.stat().st_size > MAX_CACHE_BYTES:
            raise ValueError(f"{path} is larger than {MAX_CACHE_BYTES} bytes")
        return dict(pickle.loads(path.read_bytes()))  # this script's own file
    fit = dict(make())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(fit))
    return fit


def run_mmlu(datasets: Path, seed: int, folds: int, cache: Path | None) -> None:
    from bench.router_crossfit import fold_ids
    from bench.router_mmlu import MMLU_STRONG, MMLU_WEAK, mmlu_labelled

    frame = mmlu_labelled(datasets / "routellm_mmlu.csv")
    ids = fold_ids(frame["task"].to_numpy(), folds, seed)
    data = (
        frame["prompt"].astype(str).tolist(),
        frame[[MMLU_WEAK, MMLU_STRONG]].fillna(0).to_numpy(float),
        frame["task"].astype(str).tolist(),
    )
    parts = []
    for fold in range(folds):
        split = (list(np.flatnonzero(ids != fold)), list(np.flatnonzero(ids == fold)))
        fit = _cached_fit(cache, f"s{seed}f{fold}k{folds}", lambda s=split: _fit(s, data))
        record, per_row = evaluate(fit)
        parts.append(per_row)
        head = {"data": "quality_mmlu", "seed": seed, "test_fold": fold}
        print(json.dumps(head | record | summary(per_row)), flush=True)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    head = {"data": "quality_mmlu", "seed": seed, "folds": folds, "pooled": True}
    print(json.dumps(head | summary(pooled)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None, help="keep each fit here (pickled)")
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        for seed in args.seeds:
            run_mmlu(args.datasets, seed, args.folds, args.cache)


if __name__ == "__main__":
    main()
