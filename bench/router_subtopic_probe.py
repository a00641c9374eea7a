"""Which general method finds subject-level specialists inside a task? A measured probe.

    nice .venv/bin/python -m bench.router_subtopic_probe --datasets ../shared/datasets [--quick]

``bench.router_semisynthetic``'s ``task+subtopic`` scenario gives each keyword family inside a
task its own specialist (0.93 there against the task's best at 0.85): the per-subtopic floor is
0.915, the per-task floor 0.849, and the router (with or without the task column), its heads'
argmax and a per-task word logistic all stay at ~0.846. This probe measures five per-task
methods on the question's word TF-IDF (template removed: ``bench.router_floor.question_texts``;
unigrams, English stop words dropped, fitted on the training rows only), every hyperparameter
chosen per task by an inner 4-fold CV of the training rows whose grid includes the floor:

- ``subclusters``: k-means on the L2-normalised TF-IDF rows (about spherical k-means), k in
  {1, 2, 4, 8, 16}; each cluster serves its best model with its means shrunk to the task's
  (SHRINK pseudo-rows of the task's means).
- ``deviation``: per runner-up m, a logistic on word presence, fitted on the rows where m and
  the task's best disagree, predicts "m right and best wrong"; deviate to the most likely m when
  P > 0.5 + margin (penalty/C and margin by the inner CV, margin = inf is the floor).
- ``knn``: the k most cosine-similar training prompts of the task, their mean scores shrunk to
  the task's (SHRINK pseudo-rows), argmax; k in {0 (the floor), 5, 10, 20, 40, 80}.
- ``lightgbm``: per runner-up m, LightGBM regression of s_m - s_best on the presence of the
  task's TOP_WORDS most frequent words; deviate to the largest predicted gain above a margin.
- ``l1_heads``: per model, an (L1 or L2) logistic on word presence for "m right" on all the
  task's rows; deviate to the largest predicted gain over the task's best above a margin.

Judged on (1) the semi-synthetic ``task``, ``task+subtopic`` and ``task+prompt`` scenarios,
train -> test exactly as ``bench.router_semisynthetic`` (its generator, splits and seeds), the
paired bootstrap 95% interval of method - per-task floor on the pooled test rows; and (2) the
REAL ``quality`` train rows out of fold with ``bench.router_floor``'s folds and summary (5 folds
x seeds, normal 95% interval of the seed-averaged per-row gain). ``--top-clusters K`` replaces the
task column by K k-means clusters of the whole prompt's TF-IDF (the method without the task).
``--quick``: 600/300 rows, one seed, one real seed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from bench.router import QUALITY_TASKS, _quality_models
from bench.router_embeddings import quality_data
from bench.router_floor import FOLDS, SMALL_TREES, question_texts, summary
from bench.semisynthetic_labels import (
    SCENARIOS,
    Pool,
    Structure,
    labels_draw,
    prompt_pool,
    split_rows,
)
from training.learner import metrics
from training.learner.trainer import _fold_ids

INNER_FOLDS = 4
SHRINK = 10.0  # pseudo-rows of the task's mean scores each cluster / neighbourhood borrows
CLUSTER_GRID = (1, 2, 4, 8, 16)
NEIGHBOUR_GRID = (0, 5, 10, 20, 40, 80)
MARGINS = (np.inf, 0.0, 0.05, 0.1, 0.2)  # inf first: ties in the inner CV go to the floor
LOGISTIC_SETTINGS = ((0.0, 0.3), (0.0, 3.0), (1.0, 1.0))  # (l1_ratio: 0 = L2, 1 = L1; C)
HEAD_SETTINGS = ((1.0, 0.1), (1.0, 0.3), (1.0, 1.0), (0.0, 0.1))
TOP_WORDS = 300
MIN_DISAGREE = 8
Picks = dict[Any, np.ndarray]  # hyperparameter -> each out row's model index
Matrix: TypeAlias = sparse.csr_matrix  # rows: prompts, columns: words (TF-IDF, L2-normalised rows)
Method = Callable[[Matrix, np.ndarray, Matrix, int], Picks]


def vectorize(train_texts: list[str], all_texts: list[str]) -> sparse.csr_matrix:
    """Word-unigram TF-IDF (rows L2-normalised), fitted on ``train_texts``."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english")
    vectorizer.fit(train_texts)
    return sparse.csr_matrix(vectorizer.transform(all_texts))


def _shrunk_best(total: np.ndarray, count: np.ndarray, task_mean: np.ndarray) -> np.ndarray:
    """Per row of ``total`` (summed scores of ``count`` rows): the argmax of the shrunk means."""
    return np.asarray(((total + SHRINK * task_mean) / (count[:, None] + SHRINK)).argmax(axis=1))


def _floor(s_in: np.ndarray, n_out: int) -> np.ndarray:
    return np.full(n_out, int(np.argmax(s_in.mean(axis=0))))


def subclusters(x_in: Matrix, s_in: np.ndarray, x_out: Matrix, seed: int) -> Picks:
    """(a) k-means sub-clusters of the task; each cluster's shrunk best model, per k."""
    from sklearn.cluster import KMeans

    out: Picks = {1: _floor(s_in, x_out.shape[0])}
    task_mean = s_in.mean(axis=0)
    for k in CLUSTER_GRID[1:]:
        if x_in.shape[0] < 10 * k:
            out[k] = out[1]
            continue
        model = KMeans(k, n_init=2, random_state=seed).fit(x_in)
        totals = np.array([s_in[model.labels_ == c].sum(axis=0) for c in range(k)])
        counts = np.bincount(model.labels_, minlength=k).astype(float)
        out[k] = _shrunk_best(totals, counts, task_mean)[model.predict(x_out)]
    return out


def _margin_picks(floor: int, gain: np.ndarray, threshold: float) -> Picks:
    """Per margin: the most promising model where its ``gain`` clears threshold + margin."""
    best = gain.argmax(axis=1)
    top = gain[np.arange(len(best)), best]
    return {m: np.where(top > threshold + m, best, floor) for m in MARGINS}


def _win_probability(
    xb_in: Matrix, s_in: np.ndarray, xb_out: Matrix, m: int, b: int, l1: float, c: float
) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    differ = s_in[:, m] != s_in[:, b]
    y = s_in[differ, m]
    if differ.sum() < MIN_DISAGREE or len(np.unique(y)) < 2:
        return np.full(xb_out.shape[0], float(y.mean()) if len(y) else 0.0)
    model = LogisticRegression(C=c, l1_ratio=l1, solver="liblinear", random_state=0)
    return np.asarray(model.fit(xb_in[differ], y).predict_proba(xb_out)[:, 1])


def deviation(x_in: Matrix, s_in: np.ndarray, x_out: Matrix, seed: int) -> Picks:
    """(b) per runner-up, P(it is right where the task's best is wrong) on word presence."""
    b = int(np.argmax(s_in.mean(axis=0)))
    xb_in, xb_out = (x_in > 0).astype(float), (x_out > 0).astype(float)
    out: Picks = {}
    for l1, c in LOGISTIC_SETTINGS:
        p = np.zeros((x_out.shape[0], s_in.shape[1]))
        for m in range(s_in.shape[1]):
            if m != b:
                p[:, m] = _win_probability(xb_in, s_in, xb_out, m, b, l1, c)
        for margin, picks in _margin_picks(b, p, 0.5).items():
            out[(l1, c, margin)] = picks
    return out


def knn(x_in: Matrix, s_in: np.ndarray, x_out: Matrix, seed: int) -> Picks:
    """(c) the cosine-nearest training prompts of the task, shrunk to the task's means."""
    similarity = np.asarray((x_out @ x_in.T).todense())
    order = np.argsort(-similarity, axis=1, kind="stable")
    out: Picks = {0: _floor(s_in, x_out.shape[0])}
    for k in NEIGHBOUR_GRID[1:]:
        near = order[:, : min(k, x_in.shape[0])]
        totals = s_in[near].sum(axis=1)
        out[k] = _shrunk_best(totals, np.full(len(near), float(near.shape[1])), s_in.mean(axis=0))
    return out


def l1_heads(x_in: Matrix, s_in: np.ndarray, x_out: Matrix, seed: int) -> Picks:
    """(e) per model, a logistic on word presence for "m right" (all the task's rows); deviate to
    the largest predicted gain over the task's best above a margin."""
    from sklearn.linear_model import LogisticRegression

    b = int(np.argmax(s_in.mean(axis=0)))
    xb_in, xb_out = (x_in > 0).astype(float), (x_out > 0).astype(float)
    out: Picks = {}
    for l1, c in HEAD_SETTINGS:
        estimate = np.tile(s_in.mean(axis=0), (x_out.shape[0], 1))
        for m in range(s_in.shape[1]):
            if len(np.unique(s_in[:, m])) == 2:
                model = LogisticRegression(C=c, l1_ratio=l1, solver="liblinear", random_state=0)
                estimate[:, m] = model.fit(xb_in, s_in[:, m]).predict_proba(xb_out)[:, 1]
        for margin, picks in _margin_picks(b, estimate - estimate[:, [b]], 0.0).items():
            out[(l1, c, margin)] = picks
    return out


def lightgbm(x_in: Matrix, s_in: np.ndarray, x_out: Matrix, seed: int) -> Picks:
    """(d) per runner-up, LightGBM on the top words' presence for s_m - s_best."""
    import lightgbm as lgb

    b = int(np.argmax(s_in.mean(axis=0)))
    presence = (x_in > 0).astype(float)
    top = np.argsort(-np.asarray(presence.sum(axis=0)).ravel(), kind="stable")[:TOP_WORDS]
    xb_in = presence[:, top].toarray()
    xb_out = (x_out[:, top] > 0).astype(float).toarray()
    gain = np.full((x_out.shape[0], s_in.shape[1]), -np.inf)
    for m in range(s_in.shape[1]):
        if m == b:
            continue
        model = lgb.LGBMRegressor(n_estimators=80, random_state=seed, **SMALL_TREES)
        gain[:, m] = model.fit(xb_in, s_in[:, m] - s_in[:, b]).predict(xb_out)
    return _margin_picks(b, gain, 0.0)


METHODS: dict[str, Method] = {
    "subclusters": subclusters,
    "deviation": deviation,
    "knn": knn,
    "lightgbm": lightgbm,
    "l1_heads": l1_heads,
}


def tuned(
    method: Method, x: Matrix, s: np.ndarray, inner: np.ndarray, outer: np.ndarray, seed: int
) -> tuple[np.ndarray, Any]:
    """One task: the hyperparameter by inner CV on ``inner`` (the first of equals), then applied
    to ``outer``. Returns the outer rows' picks and the chosen hyperparameter."""
    sub = _fold_ids(len(inner), INNER_FOLDS, seed + 300)
    totals: dict[Any, float] = {}
    for k in range(INNER_FOLDS):
        a, b = inner[sub != k], inner[sub == k]
        for param, picks in method(x[a], s[a], x[b], seed).items():
            totals[param] = totals.get(param, 0.0) + float(s[b, picks].sum())
    chosen = max(totals, key=lambda p: totals[p])
    return method(x[inner], s[inner], x[outer], seed)[chosen], chosen


def probe_picks(
    x: Matrix,
    s: np.ndarray,
    t: np.ndarray,
    inner: np.ndarray,
    outer: np.ndarray,
    seed: int,
    only: str = "",
) -> Picks:
    """Each method's model for the ``outer`` rows (per task of ``t``), and the per-task floor."""
    out: Picks = {"floor": np.zeros(len(outer), dtype=int)}
    for task in np.unique(t[inner]):
        i_rows, o_mask = inner[t[inner] == task], t[outer] == task
        out["floor"][o_mask] = int(np.argmax(s[i_rows].mean(axis=0)))
    for name, method in METHODS.items():
        if not name.startswith(only):
            continue
        picks = out["floor"].copy()
        for task in np.unique(t[inner]):
            i_rows, o_mask = inner[t[inner] == task], t[outer] == task
            if len(i_rows) >= 4 * INNER_FOLDS and o_mask.any():
                picks[o_mask], chosen = tuned(method, x, s, i_rows, outer[o_mask], seed)
                print(f"  {name} {task}: {chosen}", flush=True)
        out[name] = picks
    return out


def pseudo_tasks(texts: list[str], train: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The task column's stand-in: k-means clusters of the whole prompts' TF-IDF."""
    from sklearn.cluster import KMeans

    x = vectorize([texts[i] for i in train], texts)
    model = KMeans(k, n_init=4, random_state=seed).fit(x[train])
    return np.array([f"cluster{c}" for c in model.predict(x)])


def _served(s: np.ndarray, rows: np.ndarray, picks: Picks) -> dict[str, np.ndarray]:
    served = {name: s[rows, chosen] for name, chosen in picks.items()}
    for name, chosen in picks.items():
        served[f"{name} deviates"] = (chosen != picks["floor"]).astype(float)
    return served


def _pool_questions(pool: Pool) -> list[str]:
    texts = np.array(pool.prompts, dtype=object)
    for task in np.unique(pool.tasks):
        rows = np.flatnonzero(pool.tasks == task)
        texts[rows] = question_texts([pool.prompts[i] for i in rows])
    return [str(v) for v in texts]


def semisynthetic_seed(
    pool: Pool,
    questions: list[str],
    scenario: Structure,
    sizes: tuple[int, int],
    seed: int,
    args: argparse.Namespace,
) -> dict[str, np.ndarray]:
    """One seed of one scenario, train -> test: per test row, each method's score."""
    labels = labels_draw(pool, scenario, seed)
    train, test = split_rows(pool, *sizes, seed)
    rows = np.concatenate([train, test])
    x = vectorize([questions[i] for i in train], [questions[i] for i in rows])
    tasks = pool.tasks
    if args.top_clusters:
        tasks = pseudo_tasks(pool.prompts, train, args.top_clusters, seed)
    inner, outer = np.arange(len(train)), np.arange(len(train), len(rows))
    picks = probe_picks(x, labels[rows], tasks[rows], inner, outer, seed, args.only)
    served = _served(labels[rows], outer, picks)
    cell = np.char.add(pool.tasks.astype(str), pool.groups.astype(str))
    best = {c: int(np.argmax(labels[train][cell[train] == c].mean(axis=0))) for c in set(cell)}
    served["subtopic_floor"] = labels[test, [best[c] for c in cell[test]]]
    # the method told the partition: deviation on the family one-hot (representation vs method)
    told = sparse.csr_matrix(np.eye(pool.groups.max() + 1)[pool.groups[rows]])
    told_picks = probe_picks(told, labels[rows], pool.tasks[rows], inner, outer, seed, "deviation")
    served["deviation told the families"] = labels[test, told_picks["deviation"]]
    return served


def semisynthetic_summary(per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean test score per method; paired bootstrap 95% of method - floor on pooled rows."""
    pooled = {k: np.concatenate([run[k] for run in per_seed]) for k in per_seed[0]}
    out: dict[str, Any] = {}
    for name, values in pooled.items():
        row: dict[str, Any] = {"mean": round(float(values.mean()), 4)}
        if not name.endswith("deviates"):
            gain = values - pooled["floor"]
            row["gain_vs_floor"] = round(float(gain.mean()), 4)
            row["ci95"] = [round(v, 4) for v in metrics.bootstrap_interval(gain)]
            row["per_seed"] = [round(float(run[name].mean()), 4) for run in per_seed]
        out[name] = row
    return out


def _real_fold(
    prompts: list[str],
    questions: list[str],
    s: np.ndarray,
    t: np.ndarray,
    fold: np.ndarray,
    k: int,
    seed: int,
    args: argparse.Namespace,
) -> dict[str, np.ndarray]:
    """One outer fold of the real rows: TF-IDF and (optionally) top clusters fitted on the rest."""
    inner, outer = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    x = vectorize([questions[i] for i in inner], questions)
    if args.top_clusters:
        t = pseudo_tasks(prompts, inner, args.top_clusters, seed)
    return _served(s, outer, probe_picks(x, s, t, inner, outer, seed, args.only))


def real_quality(datasets: Path, seeds: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """The REAL ``quality`` train rows, out of fold with ``bench.router_floor``'s folds."""
    models = _quality_models(datasets, QUALITY_TASKS, 7)
    data = quality_data(datasets, models, "train")
    s, t = data.scores, np.array(data.tasks)
    questions = question_texts(data.prompts)
    per_seed = []
    for seed in seeds:
        fold = _fold_ids(len(t), FOLDS, seed)
        served: dict[str, np.ndarray] = {}
        for k in range(FOLDS):
            fold_served = _real_fold(data.prompts, questions, s, t, fold, k, seed, args)
            for name, values in fold_served.items():
                served.setdefault(name, np.zeros(len(t)))[fold == k] = values
        per_seed.append(served)
    return {"rows": len(t), **summary(per_seed)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes, seeds, real_seeds = (args.train, args.test), args.seeds, args.real_seeds
    if args.quick:
        sizes, seeds, real_seeds = (600, 300), seeds[:1], real_seeds[:1]
    result: dict[str, Any] = {"sizes": sizes, "seeds": seeds, "real_seeds": real_seeds}
    pool = prompt_pool(args.datasets)
    questions = _pool_questions(pool)
    with threadpool_limits(limits=1):
        for scenario in SCENARIOS[:3]:
            started = time.process_time()
            runs = [semisynthetic_seed(pool, questions, scenario, sizes, s, args) for s in seeds]
            result[scenario.name] = semisynthetic_summary(runs)
            result[scenario.name]["cpu_seconds"] = round(time.process_time() - started, 1)
            print(scenario.name, json.dumps(result[scenario.name]), flush=True)
        if real_seeds:
            started = time.process_time()
            result["real quality"] = real_quality(args.datasets, real_seeds, args)
            result["real quality"]["cpu_seconds"] = round(time.process_time() - started, 1)
            print("real quality", json.dumps(result["real quality"]), flush=True)
    return result


COLUMNS = ("task", "task+subtopic", "task+prompt", "real quality")


def table(result: dict[str, Any]) -> str:
    """Markdown: per method and column, mean score and gain over the per-task floor (95% CI)."""
    names = ["floor", *METHODS, "subtopic_floor", "deviation told the families"]
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in names:
        cells = []
        for column in COLUMNS:
            row = result.get(column, {}).get(name)
            if row is None:
                cells.append("—")
                continue
            cell = f"{row['mean']:.4f}"
            if name != "floor":
                lo, hi = row["ci95"]
                off = result[column].get(f"{name} deviates", {}).get("mean")
                cell += f" {row['gain_vs_floor']:+.4f} ({lo:+.4f} … {hi:+.4f})"
                cell += f", {off:.0%} off" if off is not None else ""
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--real-seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--top-clusters", type=int, default=0, help="K: no task column")
    parser.add_argument("--only", default="", help="the methods whose name starts with it")
    parser.add_argument("--quick", action="store_true", help="600/300 rows, one seed each")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
