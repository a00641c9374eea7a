"""The stacked task-hint form beside the shipped blend, learner-direct (issue 20; README,
"Stacked hint form").

    nice .venv/bin/python -m bench.router_stack_hint --datasets ../shared/datasets \
        --seeds 0 1 2 [--folds 5]          # quality_mmlu's cross-fit
    nice .venv/bin/python -m bench.router_stack_hint --datasets ../shared/datasets --quality

The question: would a stacker (per model, a logistic regression on the heads' out-of-fold logits
of every model plus the task's one-hot, ``C`` from a fixed grid) chosen *beside* the shipped
blend (``training/learner/task_hint.py``) lift the hinted router over the per-task floor? The
rule fixed before any run: a fit serves the stacker only if, out of fold on its training rows
(the trainer's own folds, the version's two tradeoff-0 decision rules), its best gain over the
router's own decisions is (1) at least one standard error of the per-prompt differences, (2)
above the gain of the blend the guard kept (0 if it kept none) and (3) above the best gain of
the blend and stack searches together on each of the same 30 within-fold label shuffles the
blend's guard uses (``NULL_SHUFFLES``, ``NULL_SEED``). Else the fit serves what ships: the
blend if kept, else the router.

Each MMLU fit is ``router_fit`` (default config but one thread) on the other folds of
``bench.router_crossfit.fold_ids`` (the service benchmark's folds, ``mmlu_labelled``'s rows),
scored on its test fold at tradeoff 0: the router, the router with the shipped hint
(``task_hint_report``'s decisions, as the service's report), with the chosen form, the
per-task floor (each task's best on the training folds), pooled over the folds and compared
with paired bootstrap intervals. ``--noise`` re-runs each fit's choice with the task labels
replaced by random ones (the stacker must never be chosen there). One JSON line per fit, then
one per seed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.router_task_hint import STACK_C, _design, _stack_fit, _stack_predict
from training.learner import metrics
from training.learner.router import mix_keys
from training.learner.task_hint import (
    MIN_GAIN_SE,
    NULL_SEED,
    NULL_SHUFFLES,
    _best_blend,
    fold_shuffled,
    gain_accepted,
)
from training.learner.task_hint_report import (
    _hinted_picks,
    hinted_predictions,
    per_task_floor_picks,
)
from training.learner.trainer import TrainerConfig, TrainingData, _fold_ids, router_fit

Deciders = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _stack_oof(x: np.ndarray, scores: np.ndarray, fold_of: np.ndarray, c: float) -> np.ndarray:
    oof = np.zeros(scores.shape)
    for fold in np.unique(fold_of):
        a, b = fold_of != fold, fold_of == fold
        oof[b] = _stack_predict(_stack_fit(x[a], scores[a], c), x[b])
    return oof


def best_stack(
    ids: np.ndarray, count: int, problem: tuple[Any, ...], decide: Deciders, min_se: float | None
) -> tuple[float, float, int] | None:
    """(gain, C, rule) of the stacker whose tradeoff-0 decisions gain most over the router's
    own out of fold, counting only gains above zero and (``min_se``) that many SEs."""
    scores, oof_predicted, fold_of, heads = problem
    x = _design(oof_predicted, ids, count)
    rows, best = np.arange(len(scores)), None
    for c in STACK_C:
        stacked = _stack_oof(x, scores, fold_of, c)
        for rule, chooser in enumerate(decide):
            diff = scores[rows, chooser(stacked)] - heads
            gain = gain_accepted(diff, min_se, None if best is None else best[0])
            if gain is not None:
                best = (gain, c, rule)
    return best


def stack_choice(
    ids: np.ndarray, count: int, problem: tuple[Any, ...], decide: Deciders, blend_kept: bool
) -> dict[str, Any]:
    """The module doc's rule: the stacker's best, the kept blend's gain, the null's maxima."""
    scores, oof_predicted, fold_of, heads = problem
    blend_problem = (scores, oof_predicted, fold_of, heads, count)
    blend = _best_blend(ids, blend_problem, decide, MIN_GAIN_SE)
    blend_gain = blend[0] if (blend is not None and blend_kept) else 0.0
    stack = best_stack(ids, count, problem, decide, MIN_GAIN_SE)
    found: dict[str, Any] = {
        "blend_oof_gain": round(blend_gain, 5),
        "stack": None
        if stack is None
        else {"gain": round(stack[0], 5), "C": stack[1], "rule": ("router", "lambda")[stack[2]]},
        "stack_chosen": False,
    }
    if stack is None or stack[0] <= blend_gain:
        return found
    rng = np.random.default_rng(NULL_SEED)
    null_blend, null_stack = [], []
    for _ in range(NULL_SHUFFLES):
        shuffled = fold_shuffled(ids, fold_of, rng)
        b = _best_blend(shuffled, blend_problem, decide, None)
        s = best_stack(shuffled, count, problem, decide, None)
        null_blend.append(0.0 if b is None else b[0])
        null_stack.append(0.0 if s is None else s[0])
    found["null_max"] = {"blend": round(max(null_blend), 5), "stack": round(max(null_stack), 5)}
    found["stack_chosen"] = bool(stack[0] > max(*null_blend, *null_stack))
    return found


def _training_data(prompts: list[str], scores: np.ndarray, tasks: list[str]) -> TrainingData:
    m = scores.shape[1]
    return TrainingData(
        prompts=prompts,
        models=[f"m{j}" for j in range(m)],
        scores=scores,
        costs=np.ones((len(prompts), m)),
        binary=[True] * m,
        costs_known=False,
        tasks=tasks,
    )


def fit_one(
    train: tuple[list[str], np.ndarray, list[str]],
    test: tuple[list[str], np.ndarray, list[str]],
    noise_seed: int | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One train -> test fit: its choice record and the test rows' per-row scores."""
    (prompts, scores, tasks), (t_prompts, t_scores, t_tasks) = train, test
    cfg = TrainerConfig(threads=1)
    started = time.process_time()
    fit = router_fit(_training_data(prompts, scores, tasks), cfg)
    fit_cpu = time.process_time() - started
    router, rows = fit.router, np.arange(len(scores))
    fold_of = _fold_ids(len(scores), fit.folds, cfg.seed)
    keys = mix_keys(prompts)
    decide: Deciders = (
        lambda p: router.choose_many(p, 0.0, keys, fit.oof_incumbents),
        lambda p: router.choose_hinted_many(p, 0.0),
    )
    heads = scores[rows, decide[0](fit.oof_predicted)]
    names = sorted(set(tasks))
    index = {name: i for i, name in enumerate(names)}
    ids, count = np.array([index[t] for t in tasks]), len(names) + 1  # + an unseen test task
    problem = (scores, fit.oof_predicted, fold_of, heads)
    started = time.process_time()
    choice = stack_choice(ids, count, problem, decide, router.task_hint is not None)
    choice["choice_cpu_s"] = round(time.process_time() - started, 1)
    if noise_seed is not None:
        noise = np.random.default_rng(noise_seed).integers(0, len(names), len(ids))
        choice["noise_labels"] = stack_choice(noise, count, problem, decide, False)
    per_row = _test_rows(fit, (scores, ids, count, tasks), (t_prompts, t_scores, t_tasks), choice)
    hint = router.task_hint
    choice |= {
        "train_rows": len(scores),
        "test_rows": len(t_scores),
        "router_fit_cpu_s": round(fit_cpu, 1),
        "blend_kept": None
        if hint is None
        else {"w": hint.weight, "k": hint.pseudo_rows, "policy": hint.to_meta()["policy"]},
    }
    return choice, per_row


def _test_rows(
    fit: Any,
    train: tuple[np.ndarray, np.ndarray, int, list[str]],
    test: tuple[list[str], np.ndarray, list[str]],
    choice: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Tradeoff 0 on the test rows: router, shipped hint, chosen form, per-task floor."""
    router, (scores, ids, count, tasks), (prompts, t_scores, t_tasks) = fit.router, train, test
    rows, keys = np.arange(len(t_scores)), mix_keys(prompts)
    predicted = router.predict_many(prompts)
    incumbents = router.cluster_incumbents(prompts)
    routed = router.choose_many(predicted, 0.0, keys, incumbents)
    hinted, applied = hinted_predictions(router, predicted, list(t_tasks))
    shipped = _hinted_picks(router, hinted, applied, 0.0, keys, incumbents)
    chosen = shipped
    if choice["stack_chosen"]:
        names = sorted(set(tasks))
        t_ids = np.array([names.index(t) if t in names else count - 1 for t in t_tasks])
        c, rule = choice["stack"]["C"], choice["stack"]["rule"]
        models = _stack_fit(_design(fit.oof_predicted, ids, count), scores, c)
        stacked = _stack_predict(models, _design(predicted, t_ids, count))
        chosen = (
            router.choose_many(stacked, 0.0, keys, incumbents)
            if rule == "router"
            else router.choose_hinted_many(stacked, 0.0)
        )
    floor = per_task_floor_picks(list(tasks), scores, list(t_tasks))
    return {
        "scores": t_scores,
        "routed": t_scores[rows, routed],
        "hinted": t_scores[rows, shipped],
        "chosen": t_scores[rows, chosen],
        "floor": t_scores[rows, floor],
    }


def summary(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Pooled means and paired bootstrap intervals (``metrics.bootstrap_interval``)."""

    def interval(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in metrics.bootstrap_interval(values)]

    scores = rows["scores"]
    best = scores[:, int(np.argmax(scores.mean(axis=0)))]
    kinds = ("routed", "hinted", "chosen", "floor")
    out: dict[str, Any] = {k: round(float(rows[k].mean()), 4) for k in kinds}
    out["best_single"] = round(float(best.mean()), 4)
    out["hinted_minus_floor_ci95"] = interval(rows["hinted"] - rows["floor"])
    out["chosen_minus_floor_ci95"] = interval(rows["chosen"] - rows["floor"])
    out["chosen_minus_hinted_ci95"] = interval(rows["chosen"] - rows["hinted"])
    out["chosen_minus_hinted_prompts"] = round(float((rows["chosen"] - rows["hinted"]).sum()))
    return out


def run_mmlu(datasets: Path, seed: int, folds: int, noise: bool) -> None:
    from bench.router_crossfit import fold_ids
    from bench.router_mmlu import MMLU_STRONG, MMLU_WEAK, mmlu_labelled

    frame = mmlu_labelled(datasets / "routellm_mmlu.csv")
    ids = fold_ids(frame["task"].to_numpy(), folds, seed)
    prompts = frame["prompt"].astype(str).tolist()
    scores = frame[[MMLU_WEAK, MMLU_STRONG]].fillna(0).to_numpy(float)
    tasks = frame["task"].astype(str).tolist()
    parts = []
    for fold in range(folds):
        tr, te = np.flatnonzero(ids != fold), np.flatnonzero(ids == fold)
        record, per_row = fit_one(
            ([prompts[i] for i in tr], scores[tr], [tasks[i] for i in tr]),
            ([prompts[i] for i in te], scores[te], [tasks[i] for i in te]),
            1000 * seed + fold if noise else None,
        )
        parts.append(per_row)
        record |= {"data": "quality_mmlu", "seed": seed, "test_fold": fold, **summary(per_row)}
        print(json.dumps(record), flush=True)
    pooled = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    head = {"data": "quality_mmlu", "seed": seed, "folds": folds, "pooled": True}
    print(json.dumps(head | summary(pooled)), flush=True)


def run_quality(datasets: Path, noise: bool) -> None:
    from bench.router_segment_prior import quality_split

    split = quality_split(datasets)

    def part(at: np.ndarray) -> tuple[list[str], np.ndarray, list[str]]:
        return [split.prompts[i] for i in at], split.scores[at], [split.labels[i] for i in at]

    record, per_row = fit_one(part(split.train), part(split.test), 7 if noise else None)
    print(json.dumps({"data": "quality", **record, **summary(per_row)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quality", action="store_true", help="ARC + MBPP, train -> test")
    parser.add_argument("--noise", action="store_true", help="also choose on random labels")
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        if args.quality:
            run_quality(args.datasets, args.noise)
            return
        for seed in args.seeds:
            run_mmlu(args.datasets, seed, args.folds, args.noise)


if __name__ == "__main__":
    main()
