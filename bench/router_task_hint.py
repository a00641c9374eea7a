"""Task hints at serving time, learner-direct (issue 20): the experiment that preceded the
shipped form (``training/learner/task_hint.py``, the blend; README, "Beating the per-task floor").

    nice .venv/bin/python -m bench.router_task_hint --datasets ../shared/datasets \
        --data mmlu --seeds 0 1 2          # or --data quality

The idea tested: a customer whose training data has a task column often knows the task of a
request when it is sent (which feature of their app sent it), so let the router combine that
TRUE task's statistics with the per-model heads. Variants, each chosen on the train rows only:

- ``blend``: ``(1 - w) · heads + w · task_mean_k`` with ``task_mean_k`` the task's mean score per
  model shrunk toward the overall mean by ``k`` pseudo-rows; ``w = 1, k = 0`` is the per-task
  floor, ``w = 0`` the heads' argmax. ``(w, k)`` chosen by the out-of-fold tradeoff-0 score (the
  heads' out-of-fold predictions, task means from the other folds; the trainer's folds), ties
  to ``w = 0``.
- ``stack`` (the task as a categorical feature): per model a logistic regression on the heads'
  out-of-fold logits of every model plus the task's one-hot, ``C`` chosen by its cross-fitted
  out-of-fold score over the trainer's folds; at test time applied to the final heads'
  predictions.
- ``chosen``: whichever of heads / blend / stack scores best out of fold (ties to the heads).

Everything is fitted on the train rows (``router_fit``, default config, one thread, the task
column given as the service would) and scored at tradeoff 0 on the held-out rows against the
per-task (per-subject) floor and the best single model chosen on the train rows, with paired
bootstrap 95% intervals. The test rows choose nothing. One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from bench.router_segment_prior import Split, mmlu_split, quality_split
from training.learner import metrics
from training.learner.router import mix_keys
from training.learner.task_hint import oof_task_means, task_means
from training.learner.trainer import TrainerConfig, TrainingData, _fold_ids, router_fit


class Hinted(NamedTuple):
    """What a task-hint variant is fitted from: task ids (train, test), their number (the last
    one empty: a test task unseen in training), the trainer's folds, the test rows' heads."""

    task: tuple[np.ndarray, np.ndarray]
    count: int
    fold_of: np.ndarray
    test_pred: np.ndarray


WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
PSEUDO_ROWS = (0.0, 5.0, 20.0)
STACK_C = (0.01, 0.1, 1.0, 10.0)


def _design(predicted: np.ndarray, task: np.ndarray, count: int) -> np.ndarray:
    clipped = np.clip(predicted, 1e-4, 1 - 1e-4)
    onehot = np.zeros((len(task), count))
    onehot[np.arange(len(task)), task] = 1.0
    return np.hstack([np.log(clipped / (1 - clipped)), onehot])


def _stack_fit(x: np.ndarray, scores: np.ndarray, c: float) -> list[Any]:
    models = []
    for j in range(scores.shape[1]):
        y = scores[:, j] >= 0.5
        if y.all() or not y.any():
            models.append(float(y.mean()))
            continue
        models.append(LogisticRegression(C=c, max_iter=2000).fit(x, y))
    return models


def _stack_predict(models: list[Any], x: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1] for m in models]
    )


def stack_variants(split: Split, fit: Any, ctx: Hinted) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per C: cross-fitted out-of-fold and test predictions of the task-aware stacker."""
    task, count, fold_of, test_pred = ctx
    scores, test_task = split.scores[split.train], task[1]
    x = _design(fit.oof_predicted, task[0], count)
    x_test = _design(test_pred, test_task, count)
    found = {}
    for c in STACK_C:
        oof = np.zeros(scores.shape)
        for fold in np.unique(fold_of):
            a, b = fold_of != fold, fold_of == fold
            oof[b] = _stack_predict(_stack_fit(x[a], scores[a], c), x[b])
        found[f"stack:C={c}"] = (oof, _stack_predict(_stack_fit(x, scores, c), x_test))
    return found


def blend_variants(split: Split, fit: Any, ctx: Hinted) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per (w, k): out-of-fold and test blends of the heads with the true task's means."""
    task, count, fold_of, test_pred = ctx
    scores = split.scores[split.train]
    found = {}
    for k in PSEUDO_ROWS:
        oof_mean = oof_task_means(scores, task[0], count, fold_of, k)
        test_mean = task_means(scores, task[0], count, k)[task[1]]
        for w in WEIGHTS:
            found[f"blend:w={w},k={k}"] = (
                (1 - w) * fit.oof_predicted + w * oof_mean,
                (1 - w) * test_pred + w * test_mean,
            )
    return found


def _task_ids(split: Split) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    label = np.asarray(split.labels)
    names = sorted(set(label[split.train]))
    index = {name: i for i, name in enumerate(names)}
    # a test task unseen in training maps to an empty extra id (overall mean; ignored hint)
    test = np.array([index.get(t, len(names)) for t in label[split.test]])
    return (np.array([index[t] for t in label[split.train]]), test), len(names) + 1


def _best(oof_score: dict[str, float], prefix: str) -> str:
    """The best variant out of fold among those named ``prefix…``, ties to the first."""
    names = [n for n in oof_score if n.startswith(prefix)]
    return max(names, key=lambda n: (round(oof_score[n], 12), -names.index(n)))


def run(split: Split, seed: int) -> dict[str, Any]:
    """One split: the current router, the heads, the floor and each task-hint variant."""
    m = split.scores.shape[1]
    data = TrainingData(
        prompts=[split.prompts[i] for i in split.train],
        models=[f"m{j}" for j in range(m)],
        scores=split.scores[split.train],
        costs=np.ones((len(split.train), m)),
        binary=[True] * m,
        costs_known=False,
        tasks=[split.labels[i] for i in split.train],
    )
    started = time.process_time()
    with threadpool_limits(limits=1):
        cfg = TrainerConfig(threads=1)
        fit = router_fit(data, cfg)
        fit_cpu = time.process_time() - started
        fold_of = _fold_ids(len(split.train), fit.folds, cfg.seed)
        test_prompts = [split.prompts[i] for i in split.test]
        predicted = fit.router.predict_many(test_prompts)
        incumbents = fit.router.cluster_incumbents(test_prompts)
        served = fit.router.choose_many(predicted, 0.0, mix_keys(test_prompts), incumbents)
        task, count = _task_ids(split)
        variants = {"heads": (fit.oof_predicted, predicted)}
        ctx = Hinted(task, count, fold_of, predicted)
        variants |= blend_variants(split, fit, ctx)
        hint_started = time.process_time()
        variants |= stack_variants(split, fit, ctx)
        stack_cpu = time.process_time() - hint_started
    return _summary(split, seed, served, variants, fit_cpu, stack_cpu)


def _summary(
    split: Split,
    seed: int,
    served: np.ndarray,
    variants: dict[str, tuple[np.ndarray, np.ndarray]],
    fit_cpu: float,
    stack_cpu: float,
) -> dict[str, Any]:
    train, test = split.scores[split.train], split.scores[split.test]
    inner, outer = np.arange(len(train)), np.arange(len(test))
    best = int(np.argmax(train.mean(axis=0)))
    floor = test[outer, split.floor]
    oof_score = {n: float(train[inner, v[0].argmax(axis=1)].mean()) for n, v in variants.items()}
    got = {n: test[outer, v[1].argmax(axis=1)] for n, v in variants.items()}
    picks = {"blend": _best(oof_score, "blend:"), "stack": _best(oof_score, "stack:")}
    picks["chosen"] = _best({n: oof_score[n] for n in ("heads", *picks.values())}, "")

    def interval(values: np.ndarray) -> list[float]:
        return [round(v, 4) for v in metrics.bootstrap_interval(values)]

    def row(name: str) -> dict[str, Any]:
        return {
            "variant": name,
            "out_of_fold": round(oof_score[name], 4),
            "test": round(float(got[name].mean()), 4),
            "gain_over_floor_ci95": interval(got[name] - floor),
            "gain_over_heads_ci95": interval(got[name] - got["heads"]),
        }

    floor_oof = oof_score["blend:w=1.0,k=0.0"]
    return {
        "data": split.name,
        "seed": seed,
        "held_out_rows": len(test),
        "router_now": round(float(test[outer, served].mean()), 4),
        "router_now_equals_heads_argmax": bool(np.array_equal(test[outer, served], got["heads"])),
        "heads": row("heads"),
        "per_task_floor": {
            "out_of_fold": round(floor_oof, 4),
            "test": round(float(floor.mean()), 4),
        },
        "best_single": round(float(test[:, best].mean()), 4),
        **{kind: row(name) for kind, name in picks.items()},
        "tasks_moved_by_chosen": _tasks_moved(split, got[picks["chosen"]] - got["heads"]),
        "oof_by_variant": {n: round(s, 4) for n, s in oof_score.items()},
        "test_by_variant": {n: round(float(g.mean()), 4) for n, g in got.items()},
        "router_fit_cpu_s": round(fit_cpu, 1),
        "stack_cpu_s": round(stack_cpu, 1),
    }


def _tasks_moved(split: Split, gain: np.ndarray) -> list[list[Any]]:
    """The held-out tasks where the chosen variant's score differs most from the heads':
    [task, rows, net prompts gained], largest changes first (at most five)."""
    label = np.asarray(split.labels)[split.test]
    moved = [[str(t), int((label == t).sum()), int(gain[label == t].sum())] for t in set(label)]
    return sorted((r for r in moved if r[2]), key=lambda r: (-abs(r[2]), r[0]))[:5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--data", choices=("mmlu", "quality"), default="mmlu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    for seed in args.seeds:
        split = (
            mmlu_split(args.datasets, seed) if args.data == "mmlu" else quality_split(args.datasets)
        )
        print(json.dumps(run(split, seed)), flush=True)


if __name__ == "__main__":
    main()
