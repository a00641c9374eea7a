"""Can anything beat the per-task floor on the quality-only benchmark? Out of fold on the TRAIN rows.

    nice python -m bench.router_floor --datasets ../shared/datasets [--seeds 0 1 2 3 4]

The rows are ``bench.router``'s ``quality`` train rows (RouterBench ARC-Challenge + MBPP train
files, the 7 cheapest models, costs dropped). Every number is out of fold with the trainer's
fold assignment (``_fold_ids``, 5 folds), repeated for each seed; every choice (the task's best
model, a threshold, a model's weights) is made on the other folds only, and a threshold on an
inner cross-validation of those folds (nested). The reference is the per-task floor: each fold's
rows served by their task's best model on the other folds. A method "beats the floor" when its
per-row gain over the floor, averaged over the seeds, has a 95% interval above zero.

Features (fitted per outer fold on that fold's training prompts, no labels):
- ``full``: TF-IDF word 1-2-grams + char_wb 3-5-grams of the whole prompt, SVD to 32, plus the
  featurizer's surface statistics (what the router's dense features are);
- ``question``: the same of the prompt with its template removed (segments, split on newlines,
  that occur in >= 2% of the prompts: ARC's five-shot prefix and instruction are 1,700 of its
  ~2,050 characters, identical in every ARC prompt), plus answer-type/difficulty features of the
  remaining text (``_difficulty``).

Methods (tradeoff 0, pick the model with the highest estimated score):
1. ``gated``: start from the task's best model; per runner-up m, a logistic classifier on the rows
   where m and the best disagree predicts "m right where the best is wrong"; deviate to the m
   with the largest estimated gain when it exceeds a threshold chosen by inner 4-fold CV (the
   grid includes "never", i.e. the floor).
2. ``irt``: P(m right on i) = sigmoid(b[m, task] + a_m . theta_i), theta_i = W x_i of rank d,
   fitted jointly over the 7 models (L-BFGS, L2), pooling the models' labels.
3. ``difficulty``: a ridge regression predicts the share of models right on a prompt, and a
   per-task, per-model logistic on that one number (strong models win on hard prompts).
4. ``heads``: per-task, per-model L2 logistic on the features (the independent-heads reference).
5. ``topics``: per task, k-means on the features and each cluster's best model (topic-level
   structure inside a task; on ``question`` features the shared prefix no longer hides it), k in
   {1, 2, 4, 8} chosen by inner 4-fold CV (1 = the floor); ``topics k=..`` fixed k.
``--only NAME`` runs the methods whose name starts with NAME (the floor always).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, sparse

from bench.router import QUALITY_TASKS, _quality_models
from bench.router_embeddings import quality_data
from training.learner.prompt_text import text_statistics
from training.learner.trainer import _fold_ids

FOLDS = 5
TEMPLATE_SHARE = 0.02
THRESHOLDS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, np.inf)
SEGMENT = re.compile(r"\\n|\n")
# LightGBM for a few hundred noisy 0/1 rows: small, subsampled trees, one thread
SMALL_TREES: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 10,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "verbose": -1,
    "n_jobs": 1,
}


def _segments(prompt: str) -> list[str]:
    return [s.strip() for s in SEGMENT.split(prompt) if s.strip()]


def question_texts(prompts: list[str]) -> list[str]:
    """Each prompt without its template: segments found in >= 2% of the prompts."""
    counts = Counter(s for p in prompts for s in set(_segments(p)))
    common = {s for s, c in counts.items() if c >= TEMPLATE_SHARE * len(prompts)}
    return [" \n ".join(s for s in _segments(p) if s not in common) or p for p in prompts]


def _difficulty(text: str) -> list[float]:
    options = re.findall(r"(?m)(?:^|\n|\\n)\s*\(?([A-E])[).:]\s*(.*)", text)
    option_lengths = [len(o[1]) for o in options] or [0]
    words = text.split()
    return [
        float(len(options)),
        float(np.log1p(np.mean(option_lengths))),
        float(np.std(option_lengths) / (np.mean(option_lengths) + 1)),
        float(np.log1p(len(text))),
        float(np.log1p(len(words))),
        sum(c.isdigit() for c in text) / max(len(text), 1),
        float(bool(re.search(r"\b(not|except|least|false)\b", text, re.I))),
        float(text.count("assert")),
        float(bool(re.search(r"\b(string|list|tuple|dictionary|matrix|array)\b", text, re.I))),
        float(bool(re.search(r"\b(regex|recursion|sort|prime|binary|bit)\w*", text, re.I))),
        float(np.mean([len(w) for w in words]) if words else 0.0),
    ]


def features(train_texts: list[str], all_texts: list[str], extra: bool) -> np.ndarray:
    """TF-IDF word + char SVD(32) and surface statistics, fitted on ``train_texts``; standardised."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    blocks = []
    for kwargs in (
        {"analyzer": "word", "ngram_range": (1, 2), "max_features": 30000},
        {"analyzer": "char_wb", "ngram_range": (3, 5), "max_features": 20000},
    ):
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, **kwargs)
        vectorizer.fit(train_texts)
        blocks.append(vectorizer.transform(all_texts))
    matrix = sparse.hstack(blocks).tocsr()
    rows = np.arange(len(train_texts))
    svd = TruncatedSVD(32, random_state=0).fit(matrix[rows])
    parts = [svd.transform(matrix), np.array([text_statistics(t) for t in all_texts])]
    if extra:
        parts.append(np.array([_difficulty(t) for t in all_texts]))
    x = np.hstack(parts)
    mean, std = x[rows].mean(axis=0), x[rows].std(axis=0) + 1e-9
    return np.asarray((x - mean) / std)


def _logistic(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return DummyClassifier(strategy="prior").fit(x, y)
    return LogisticRegression(C=c, max_iter=300).fit(x, y)


def _task_best(scores: np.ndarray, tasks: np.ndarray) -> dict[str, int]:
    return {t: int(np.argmax(scores[tasks == t].mean(axis=0))) for t in np.unique(tasks)}


def _gains(x_in, s_in, t_in, x_out, t_out, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Per out row: the floor's model, and each model's estimated gain over it (0 for itself)."""
    best = _task_best(s_in, t_in)
    floor = np.array([best[t] for t in t_out])
    gain = np.zeros((len(t_out), s_in.shape[1]))
    for task, b in best.items():
        inside, outside = t_in == task, t_out == task
        for m in range(s_in.shape[1]):
            if m == b or not outside.any():
                continue
            differ = inside & (s_in[:, m] != s_in[:, b])
            share = differ.sum() / max(inside.sum(), 1)
            if differ.sum() < 8:
                gain[outside, m] = share * (2 * s_in[differ, m].mean() - 1) if differ.any() else -1
                continue
            wins = _logistic(x_in[differ], s_in[differ, m], c).predict_proba(x_out[outside])
            p_win = wins[:, -1] if wins.shape[1] == 2 else np.full(outside.sum(), wins[0, 0])
            gain[outside, m] = share * (2 * p_win - 1)
    return floor, gain


def _gated_picks(floor: np.ndarray, gain: np.ndarray, threshold: float) -> np.ndarray:
    best = gain.argmax(axis=1)
    deviate = gain[np.arange(len(best)), best] > threshold
    return np.where(deviate, best, floor)


def gated(x, s, t, inner: np.ndarray, outer: np.ndarray, seed: int, c: float) -> np.ndarray:
    """Method 1: the threshold by inner 4-fold CV on ``inner``, then applied to ``outer``."""
    sub = _fold_ids(len(inner), 4, seed + 100)
    totals = np.zeros(len(THRESHOLDS))
    for k in range(4):
        a, b = inner[sub != k], inner[sub == k]
        floor, gain = _gains(x[a], s[a], t[a], x[b], t[b], c)
        for j, threshold in enumerate(THRESHOLDS):
            totals[j] += s[b, _gated_picks(floor, gain, threshold)].sum()
    threshold = THRESHOLDS[int(np.argmax(totals))]
    floor, gain = _gains(x[inner], s[inner], t[inner], x[outer], t[outer], c)
    return _gated_picks(floor, gain, threshold)


def _irt_loss(params, x, y, task_ids, tasks, rank, lam):
    p, m = x.shape[1], y.shape[1]
    w = params[: rank * p].reshape(rank, p)
    a = params[rank * p : rank * p + m * rank].reshape(m, rank)
    b = params[rank * p + m * rank :].reshape(tasks, m)
    theta = x @ w.T
    logit = b[task_ids] + theta @ a.T
    prob = 1 / (1 + np.exp(-logit))
    eps = 1e-9
    loss = -(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps)).sum() / len(y)
    loss += lam * ((w * w).sum() + (a * a).sum())
    r = (prob - y) / len(y)
    grad_b = np.zeros_like(b)
    np.add.at(grad_b, task_ids, r)
    grad_a = r.T @ theta + 2 * lam * a
    grad_w = (r @ a).T @ x + 2 * lam * w
    return loss, np.concatenate([grad_w.ravel(), grad_a.ravel(), grad_b.ravel()])


def irt(x, s, t, inner, outer, rank: int, lam: float, seed: int) -> np.ndarray:
    """Method 2: a rank-``rank`` item-response model, prompt ability from the features."""
    names = {name: i for i, name in enumerate(np.unique(t))}
    ids = np.array([names[v] for v in t])
    p, m = x.shape[1], s.shape[1]
    rng = np.random.default_rng(seed)
    start = np.concatenate(
        [rng.normal(0, 0.01, rank * p), rng.normal(0, 0.1, m * rank), np.zeros(len(names) * m)]
    )
    args = (x[inner], s[inner], ids[inner], len(names), rank, lam)
    fitted = optimize.minimize(
        _irt_loss, start, args=args, jac=True, method="L-BFGS-B", options={"maxiter": 300}
    )
    w = fitted.x[: rank * p].reshape(rank, p)
    a = fitted.x[rank * p : rank * p + m * rank].reshape(m, rank)
    b = fitted.x[rank * p + m * rank :].reshape(len(names), m)
    return np.asarray((b[ids[outer]] + (x[outer] @ w.T) @ a.T).argmax(axis=1))


def difficulty(x, s, t, inner, outer, alpha: float) -> np.ndarray:
    """Method 3: predicted difficulty, then per task and model a logistic on it."""
    from sklearn.linear_model import Ridge

    share = s.mean(axis=1)
    predicted = Ridge(alpha=alpha).fit(x[inner], share[inner]).predict(x)
    # the inner rows' own difficulty out of an inner fold, so the slopes see honest estimates
    sub = _fold_ids(len(inner), 4, 7)
    honest = np.zeros(len(inner))
    for k in range(4):
        model = Ridge(alpha=alpha).fit(x[inner[sub != k]], share[inner[sub != k]])
        honest[sub == k] = model.predict(x[inner[sub == k]])
    estimate = np.zeros((len(outer), s.shape[1]))
    for task in np.unique(t[inner]):
        i_rows, o_rows = t[inner] == task, t[outer] == task
        for m in range(s.shape[1]):
            model = _logistic(honest[i_rows, None], s[inner[i_rows], m], 1.0)
            estimate[o_rows, m] = model.predict_proba(predicted[outer[o_rows], None])[:, -1]
    return estimate.argmax(axis=1)


def heads(x, s, t, inner, outer, c: float) -> np.ndarray:
    """Method 4: independent per-task, per-model logistic heads."""
    estimate = np.zeros((len(outer), s.shape[1]))
    for task in np.unique(t[inner]):
        i_rows, o_rows = inner[t[inner] == task], t[outer] == task
        for m in range(s.shape[1]):
            model = _logistic(x[i_rows], s[i_rows, m], c)
            estimate[o_rows, m] = model.predict_proba(x[outer[o_rows]])[:, -1]
    return estimate.argmax(axis=1)


def _topic_picks(x, s, t, inner, outer, k: int, seed: int) -> np.ndarray:
    """Per task, k-means on the features; each cluster's best model (fall back: the task's)."""
    from sklearn.cluster import KMeans

    best = _task_best(s[inner], t[inner])
    picks = np.array([best[v] for v in t[outer]])
    for task in np.unique(t[inner]):
        i_rows, o_rows = inner[t[inner] == task], t[outer] == task
        if k < 2 or len(i_rows) < 20 * k or not o_rows.any():
            continue
        model = KMeans(k, n_init=4, random_state=seed).fit(x[i_rows])
        labels = model.labels_
        for c in range(k):
            here = o_rows & (model.predict(x[outer]) == c)
            if (labels == c).sum():
                picks[here] = int(np.argmax(s[i_rows[labels == c]].mean(axis=0)))
    return picks


def topics(x, s, t, inner: np.ndarray, outer: np.ndarray, seed: int) -> np.ndarray:
    """Method 5: per-task topic clusters, k in {1 (the floor), 2, 4, 8} chosen by inner CV."""
    sub = _fold_ids(len(inner), 4, seed + 200)
    grid = (1, 2, 4, 8)
    totals = np.zeros(len(grid))
    for k in range(4):
        a, b = inner[sub != k], inner[sub == k]
        for j, clusters in enumerate(grid):
            totals[j] += s[b, _topic_picks(x, s, t, a, b, clusters, seed)].sum()
    chosen = grid[int(np.argmax(totals))]
    return _topic_picks(x, s, t, inner, outer, chosen, seed)


def _methods(seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"topics": lambda x, s, t, i, o: topics(x, s, t, i, o, seed)}
    for clusters in (2, 4, 8):
        out[f"topics k={clusters}"] = lambda x, s, t, i, o, c=clusters: _topic_picks(
            x, s, t, i, o, c, seed
        )
    for c in (0.01, 0.1, 1.0):
        out[f"gated C={c}"] = lambda x, s, t, i, o, c=c: gated(x, s, t, i, o, seed, c)
        out[f"heads C={c}"] = lambda x, s, t, i, o, c=c: heads(x, s, t, i, o, c)
    for rank in (1, 2, 4):
        for lam in (0.001, 0.01):
            out[f"irt d={rank} lam={lam}"] = lambda x, s, t, i, o, r=rank, lam=lam: irt(
                x, s, t, i, o, r, lam, seed
            )
    for alpha in (1.0, 100.0):
        out[f"difficulty alpha={alpha:g}"] = lambda x, s, t, i, o, a=alpha: difficulty(
            x, s, t, i, o, a
        )
    return out


def run_seed(prompts, questions, s, t, seed: int, only: str = "") -> dict[str, np.ndarray]:
    """Per-row served score of the floor and of every (features, method) for one seed."""
    fold = _fold_ids(len(prompts), FOLDS, seed)
    served: dict[str, np.ndarray] = {}
    for k in range(FOLDS):
        inner, outer = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        best = _task_best(s[inner], t[inner])
        served.setdefault("floor", np.zeros(len(t)))[outer] = s[outer, [best[v] for v in t[outer]]]
        for name, texts, extra in (("full", prompts, False), ("question", questions, True)):
            x = features([texts[i] for i in inner], texts, extra)
            for method, run in _methods(seed).items():
                if not method.startswith(only):
                    continue
                picks = run(x, s, t, inner, outer)
                served.setdefault(f"{name} {method}", np.zeros(len(t)))[outer] = s[outer, picks]
        print(f"seed {seed} fold {k} done", flush=True)
    return served


def summary(per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean over seeds, and the paired 95% interval of the per-row gain over the floor."""
    out: dict[str, Any] = {}
    for name in per_seed[0]:
        scores = [float(run[name].mean()) for run in per_seed]
        gain = np.mean([run[name] - run["floor"] for run in per_seed], axis=0)
        half = 1.96 * gain.std(ddof=1) / np.sqrt(len(gain))
        out[name] = {
            "mean": round(float(np.mean(scores)), 4),
            "per_seed": [round(v, 4) for v in scores],
            "gain_vs_floor": round(float(gain.mean()), 4),
            "ci95": [round(float(gain.mean() - half), 4), round(float(gain.mean() + half), 4)],
        }
    return out


def pairwise_auc(prompts, questions, s, t, seed: int = 0) -> dict[str, Any]:
    """Diagnostic: out-of-fold ROC AUC of "runner-up m right where the task's best is wrong",
    on the rows where they disagree (0.5 = no signal), logistic (C=0.1) and LightGBM."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    fold = _fold_ids(len(prompts), FOLDS, seed)
    best = _task_best(s, t)
    out: dict[str, Any] = {}
    for name, texts, extra in (("full", prompts, False), ("question", questions, True)):
        xs = [
            features([texts[i] for i in np.flatnonzero(fold != k)], texts, extra)
            for k in range(FOLDS)
        ]
        for task, b in best.items():
            for m in np.argsort(-s[t == task].mean(axis=0))[1:4]:
                differ = (t == task) & (s[:, m] != s[:, b])
                for kind in ("logistic", "lightgbm"):
                    estimate = np.zeros(len(t))
                    for k in range(FOLDS):
                        fit_rows = np.flatnonzero(differ & (fold != k))
                        rows = np.flatnonzero(differ & (fold == k))
                        x, y = xs[k], s[fit_rows, m]
                        if kind == "logistic":
                            model = _logistic(x[fit_rows], y, 0.1)
                        else:
                            model = lgb.LGBMClassifier(n_estimators=60, **SMALL_TREES)
                            model.fit(x[fit_rows], y)
                        estimate[rows] = model.predict_proba(x[rows])[:, -1]
                    auc = roc_auc_score(s[differ, m], estimate[differ])
                    wins = float(s[differ, m].mean())
                    key = f"{name} {task} m={m} vs best={b} ({int(differ.sum())} rows, wins {wins:.2f}) {kind}"
                    out[key] = round(float(auc), 3)
                    print(key, out[key], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--auc", action="store_true", help="the pairwise AUC diagnostic only")
    parser.add_argument("--only", default="", help="run the methods whose name starts with it")
    args = parser.parse_args()
    models = _quality_models(args.datasets, QUALITY_TASKS, 7)
    train = quality_data(args.datasets, models, "train")
    t = np.array(train.tasks)
    questions = question_texts(train.prompts)
    if args.auc:
        print(json.dumps(pairwise_auc(train.prompts, questions, train.scores, t), indent=1))
        return
    per_seed = [
        run_seed(train.prompts, questions, train.scores, t, s, args.only) for s in args.seeds
    ]
    result = {"rows": len(t), "seeds": args.seeds, "methods": summary(per_seed)}
    for name, row in sorted(result["methods"].items(), key=lambda kv: -kv[1]["mean"]):
        print(f"{name:38s} {row['mean']:.4f} gain {row['gain_vs_floor']:+.4f} CI {row['ci95']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
