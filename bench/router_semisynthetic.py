"""Semi-synthetic quality-only benchmark: real prompts, simulated correctness with known structure.

    nice .venv/bin/python -m bench.router_semisynthetic --datasets ../shared/datasets [--quick]

Does the router exploit structure *inside* a task where it exists? The real quality-only data
(``bench.router``'s ARC + MBPP, 7 RouterBench models) has none to find, so it cannot say. Here
the PROMPTS are real (read from ``--datasets``, never copied: ``routellm_mmlu.csv``,
``routerbench_arc_challenge_{train,test}.csv``, ``routerbench_mbpp_{train,test}.csv``; three tasks,
one per source) and the per-model correctness LABELS of 7 equal-price models are drawn from the
seeded generative model below, each kind of structure switchable, so their effects read apart.

The generator (what P(model j right on prompt i) sums: (a) task, (b) subtopic, (c) prompt,
(d) mc) is ``bench/semisynthetic_labels.py``.

Each seed samples disjoint train/test prompts per task (shares TASK_SHARES, MBPP capped by its
425 prompts), draws labels, fits the learner directly (``router_fit`` with the default
``TrainerConfig`` but one thread, as ``bench.router_embeddings``) once without and once with the
task column (``TrainingData.tasks``) — with ``--subtasks`` a third time with the column naming the
prompt's subtopic as a subtask (``mmlu/science``, ``subtask_labels``) — and scores tradeoff 0 on the test rows (``report_build``'s
curve). References, every choice made on the train rows: the best single model, the per-task
floor (each task's best model), the per-subtopic floor (each (task, subtopic)'s best model);
``observable`` (the generator's own best model from what the text shows: task, subtopic, o_i)
and the oracle (a right model whenever one exists) are ceilings; ``heads`` (the argmax of the
router's predicted scores, without its policy) is a diagnostic, and ``word_heads`` a plain
supervised reference given the task (``bench.router_floor.heads`` on word TF-IDF). Intervals: paired bootstrap 95%
of the per-row router - per-task floor (and - per-subtopic floor), test rows of all seeds pooled.
A full run (5 scenarios x 3 seeds x 2 fits of 2,000 rows) took 6.9 CPU minutes (``--subtasks
--scenarios task task+subtopic task+subtopic+prompt``: 27 fits, 9.6 CPU minutes); ``--quick`` is a
smoke run (400/200 rows, one seed, two scenarios or ``--only``'s, 3 folds and 40 boosting
rounds). ``--only`` (alias ``--scenarios``) runs some scenarios, ``--column without|with`` one of
the two fits; ``--rows`` saves every policy's per-row scores (with the run's seeds and sizes) and
``--against`` an earlier run's file gives paired router differences (refused unless its seeds
and sizes are this run's: the same test rows).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from bench.router_floor import heads
from bench.semisynthetic_labels import (
    MODELS,
    SCENARIOS,
    Pool,
    Structure,
    label_logits,
    labels_draw,
    prompt_pool,
    split_rows,
    subtask_labels,
)
from training.learner import metrics
from training.learner.report import report_build
from training.learner.router import mix_keys
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

WORD_HEADS_C = 1.0
# The router's fits per seed: without a task column, with it, and with it naming each prompt's
# subtopic as a subtask (``task/family``: a hierarchical task label, training/learner/task_labels.py)
FITS = ("without", "with", "subtasks")


def _training_data(prompts: list[str], scores: np.ndarray, tasks: list[str] | None) -> TrainingData:
    return TrainingData(
        prompts=prompts,
        models=list(MODELS),
        scores=scores,
        costs=np.ones_like(scores),
        binary=[True] * len(MODELS),
        costs_known=False,
        tasks=tasks,
    )


def router_picks(
    train: TrainingData, test: TrainingData, config: TrainerConfig
) -> dict[str, np.ndarray]:
    """Each test row's model under the router's tradeoff-0 choice (the report's curve point),
    and under the argmax of its predicted scores alone (``heads``: no policy, clusters or
    incumbents; a diagnostic of what the heads learned, not what the router serves)."""
    # One BLAS/OpenMP thread: on the shared 2-core machine a 240-row fit took 18 CPU s with the
    # default thread pools (spin-waiting) and 1.8 s with one.
    with threadpool_limits(limits=1):
        router = router_fit(train, config).router
        predicted = router.predict_many(test.prompts)
        report = report_build(
            router=router,
            predicted=predicted,
            prompts=test.prompts,
            scores=test.scores,
            costs=test.costs,
            evaluation={"method": "holdout"},
            tasks=test.tasks,
        )
        keys, incumbents = mix_keys(test.prompts), router.cluster_incumbents(test.prompts)
        picks = router.choose_many(predicted, 0.0, keys, incumbents)
    served = test.scores[np.arange(len(picks)), picks]
    assert abs(float(served.mean()) - report["curve"][0]["score"]) < 1e-6
    return {"router": picks, "heads": predicted.argmax(axis=1)}


def _group_best(scores: np.ndarray, keys: np.ndarray) -> dict[Any, int]:
    return {k: int(np.argmax(scores[keys == k].mean(axis=0))) for k in np.unique(keys)}


def reference_picks(
    pool: Pool, structure: Structure, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> dict[str, np.ndarray]:
    """Each test row's model under each reference policy (choices made on the train rows)."""
    cell = np.char.add(np.char.add(pool.tasks, "/"), pool.groups.astype(str))
    per_task = _group_best(labels[train], pool.tasks[train])
    per_subtopic = _group_best(labels[train], cell[train])
    return {
        "best_single": np.full(len(test), int(np.argmax(labels[train].mean(axis=0)))),
        "task_floor": np.array([per_task[t] for t in pool.tasks[test]]),
        "subtopic_floor": np.array(
            [per_subtopic.get(c, per_task[c.split("/")[0]]) for c in cell[test]]
        ),
        "observable": label_logits(pool, structure)[test].argmax(axis=1),
    }


def served_scores(scores: np.ndarray, picks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per row: each policy's score, the oracle's, and (0/1) whether a policy left the row's
    per-task model (``<policy> deviates``)."""
    rows = np.arange(len(scores))
    served = {name: scores[rows, chosen] for name, chosen in picks.items()}
    served["oracle"] = scores.max(axis=1)
    for name, chosen in picks.items():
        if name.startswith(("router", "heads", "word", "observable")):
            served[f"{name} deviates"] = (chosen != picks["task_floor"]).astype(float)
    return served


def word_heads_picks(
    prompts: list[str], labels: np.ndarray, tasks: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """Per task and model an L2 logistic on word 1-2-gram TF-IDF of the prompts (fitted on the
    train rows; C = WORD_HEADS_C, not tuned): what a plain learner told the task reaches."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    vectorizer.fit([prompts[i] for i in train])
    rows = np.concatenate([train, test])
    x = vectorizer.transform([prompts[i] for i in rows])
    inner, outer = np.arange(len(train)), np.arange(len(train), len(rows))
    with threadpool_limits(limits=1):
        return np.asarray(heads(x, labels[rows], tasks[rows], inner, outer, WORD_HEADS_C))


def run_seed(
    pool: Pool,
    structure: Structure,
    sizes: tuple[int, int],
    seed: int,
    config: TrainerConfig,
    fits: tuple[str, ...] = FITS[:2],
) -> dict[str, np.ndarray]:
    """One seed of one scenario: per test row, each policy's score; the router fitted once per
    task column of ``fits`` (``FITS``)."""
    labels = labels_draw(pool, structure, seed)
    train, test = split_rows(pool, *sizes, seed)
    prompts = pool.mc_prompts if structure.mc else pool.prompts
    picks = reference_picks(pool, structure, labels, train, test)
    picks["word_heads"] = word_heads_picks(prompts, labels, pool.tasks, train, test)
    test_data = _training_data([prompts[i] for i in test], labels[test], pool.tasks[test].tolist())
    subtasks = subtask_labels(pool)
    columns = {
        "without": None,
        "with": pool.tasks[train].tolist(),
        "subtasks": [subtasks[i] for i in train],
    }
    for column in fits:
        train_data = _training_data([prompts[i] for i in train], labels[train], columns[column])
        for policy, chosen in router_picks(train_data, test_data, config).items():
            picks[f"{policy}_{column}_tasks"] = chosen
    return served_scores(labels[test], picks)


def _interval(gain: np.ndarray) -> list[float]:
    return [round(v, 4) for v in metrics.bootstrap_interval(gain)]


def scenario_summary(per_seed: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Mean test score of each policy over the seeds; intervals on the pooled test rows."""
    pooled = {k: np.concatenate([run[k] for run in per_seed]) for k in per_seed[0]}
    out: dict[str, Any] = {k: round(float(v.mean()), 4) for k, v in pooled.items()}
    out["per_seed"] = {k: [round(float(run[k].mean()), 4) for run in per_seed] for k in pooled}
    for router in (f"router_{fit}_tasks" for fit in FITS if f"router_{fit}_tasks" in pooled):
        for floor in ("task_floor", "subtopic_floor"):
            out[f"{router} - {floor}"] = _gain(pooled[router] - pooled[floor])
    if "router_subtasks_tasks" in pooled and "router_with_tasks" in pooled:
        gain = pooled["router_subtasks_tasks"] - pooled["router_with_tasks"]
        out["router_subtasks_tasks - router_with_tasks"] = _gain(gain)
    return out


def _gain(gain: np.ndarray) -> dict[str, Any]:
    return {"mean": round(float(gain.mean()), 4), "ci95": _interval(gain)}


def benchmark(
    datasets: Path,
    scenarios: tuple[Structure, ...],
    sizes: tuple[int, int],
    seeds: list[int],
    config: TrainerConfig,
    fits: tuple[str, ...] = FITS[:2],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Each scenario's summary, and every policy's per-row scores (``scenario/policy``: the
    test rows of all seeds pooled, in seed order); the router fitted once per column of
    ``fits`` (``FITS``)."""
    pool = prompt_pool(datasets)
    result: dict[str, Any] = {"train_rows": sizes[0], "test_rows": sizes[1], "seeds": seeds}
    rows: dict[str, np.ndarray] = {}
    for structure in scenarios:
        per_seed = [run_seed(pool, structure, sizes, seed, config, fits) for seed in seeds]
        result[structure.name] = scenario_summary(per_seed)
        for policy in per_seed[0]:
            rows[f"{structure.name}/{policy}"] = np.concatenate([run[policy] for run in per_seed])
        print(structure.name, json.dumps(result[structure.name]), flush=True)
    return result, rows


def against(rows: dict[str, np.ndarray], earlier: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per scenario and router column in both runs: this run's tradeoff-0 score less the
    earlier run's (``--rows`` of another commit, same seeds and sizes: the same test rows), a
    paired bootstrap 95% interval on the pooled rows."""
    out: dict[str, Any] = {}
    for key, now in rows.items():
        if key.split("/")[1].startswith("router_") and key in earlier and "deviates" not in key:
            gain = now - earlier[key]
            out[key] = {"mean": round(float(gain.mean()), 4), "ci95": _interval(gain)}
    return out


COLUMNS = (
    "router_without_tasks",
    "router_with_tasks",
    "heads_without_tasks",
    "word_heads",
    "best_single",
    "task_floor",
    "subtopic_floor",
    "observable",
    "oracle",
)
DEVIATING = ("router_without_tasks", "router_with_tasks", "word_heads", "observable")


def _cell(row: dict[str, Any], key: str, form: str) -> str:
    return format(row[key], form) if key in row else "—"


def table(result: dict[str, Any], scenarios: tuple[Structure, ...]) -> str:
    """A markdown table: the policies' scores and the router - per-task floor intervals."""
    titles = (
        "scenario",
        "router (no task column)",
        "router (task column)",
        "heads' argmax (no column)",
        "per-task word logistic",
        "best single",
        "per-task floor",
        "per-subtopic floor",
        "observable",
        "oracle",
        "router - per-task floor (no column / column), 95% CI",
        "rows off the per-task model (router no column / column / word logistic / observable)",
    )
    lines = _header(titles)
    for structure in scenarios:
        row = result[structure.name]
        gaps = [row.get(f"router_{c}_tasks - task_floor") for c in ("without", "with")]
        cis = " / ".join(_ci(g) if g else "—" for g in gaps)
        cells = " | ".join(_cell(row, c, ".4f") for c in COLUMNS)
        off = " / ".join(_cell(row, f"{c} deviates", ".1%") for c in DEVIATING)
        lines.append(f"| {structure.name} | {cells} | {cis} | {off} |")
    return "\n".join(lines)


def _header(titles: tuple[str, ...]) -> list[str]:
    return ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]


def _ci(gain: dict[str, Any]) -> str:
    return f"{gain['mean']:+.4f} ({gain['ci95'][0]:+.4f} … {gain['ci95'][1]:+.4f})"


SUBTASK_CELLS = ("router_with_tasks", "router_subtasks_tasks", "task_floor", "subtopic_floor")
SUBTASK_GAPS = tuple(
    f"router_subtasks_tasks - {c}" for c in ("task_floor", "router_with_tasks", "subtopic_floor")
)
SUBTASK_TITLES = (
    "scenario",
    "router (task column)",
    "router (task/subtopic labels)",
    "per-task floor",
    "per-subtopic floor",
    "subtask labels - per-task floor",
    "subtask labels - task column",
    "subtask labels - per-subtopic floor",
)


def subtasks_table(result: dict[str, Any], scenarios: tuple[Structure, ...]) -> str:
    """With ``--subtasks``: the router given ``task/subtopic`` labels against the same router
    given the task alone and the floors, paired 95% intervals."""
    rows = [
        [
            name,
            *(_cell(row, c, ".4f") for c in SUBTASK_CELLS),
            *(_ci(row[g]) if g in row else "—" for g in SUBTASK_GAPS),
        ]
        for name, row in ((s.name, result[s.name]) for s in scenarios)
    ]
    return "\n".join([*_header(SUBTASK_TITLES), *("| " + " | ".join(r) + " |" for r in rows)])


def arguments() -> argparse.ArgumentParser:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke: 400/200 rows, one seed, 3 folds and 40 boosting rounds; two scenarios "
        "unless --only names them",
    )
    parser.add_argument(
        "--subtasks",
        action="store_true",
        help="a third fit per seed, the task column naming each prompt's subtopic (task/family)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--only",
        "--scenarios",
        dest="only",
        nargs="+",
        choices=[s.name for s in SCENARIOS],
        help="these scenarios alone (default: all)",
    )
    parser.add_argument(
        "--column", choices=FITS[:2], help="fit the router only without / with the column"
    )
    parser.add_argument("--rows", type=Path, help="save every policy's per-row scores (.npz)")
    parser.add_argument(
        "--against", type=Path, help="an earlier run's --rows: paired router differences"
    )
    return parser


def plan(
    args: argparse.Namespace,
) -> tuple[TrainerConfig, tuple[Structure, ...], tuple[int, int], list[int]]:
    """The run's config, scenarios, (train, test) sizes and seeds: ``--quick`` shrinks the
    sizes, seeds and fits, and keeps ``--only``'s scenarios when given (else two)."""
    config = TrainerConfig(threads=1)
    scenarios: tuple[Structure, ...] = SCENARIOS
    sizes, seeds = (args.train, args.test), list(args.seeds)
    if args.quick:
        config = replace(config, folds=3, boost_rounds=40)
        scenarios, sizes, seeds = (SCENARIOS[0], SCENARIOS[3]), (400, 200), seeds[:1]
    if args.only:
        scenarios = tuple(s for s in SCENARIOS if s.name in args.only)
    return config, scenarios, sizes, seeds


def pairing(seeds: list[int], sizes: tuple[int, int]) -> dict[str, np.ndarray]:
    """What ``--rows`` saves beside the rows, so ``--against`` pairs only the same test rows."""
    return {"meta/seeds": np.asarray(seeds), "meta/sizes": np.asarray(sizes)}


def earlier_rows(path: Path, seeds: list[int], sizes: tuple[int, int]) -> dict[str, np.ndarray]:
    """An earlier run's ``--rows``, refused (``ValueError``) unless it was saved with these
    seeds and sizes: other test rows paired by key would give a meaningless difference."""
    with np.load(path) as npz:
        earlier = {k: npz[k] for k in npz.files}
    for key, now in pairing(seeds, sizes).items():
        if key not in earlier:
            raise ValueError(f"{path} has no {key}: saved before seeds and sizes were recorded")
        if not np.array_equal(earlier[key], now):
            raise ValueError(
                f"{path} was saved with {key.split('/')[1]} {earlier[key].tolist()}, this run "
                f"has {now.tolist()}: its rows are not this run's test rows"
            )
    return {k: v for k, v in earlier.items() if not k.startswith("meta/")}


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    config, scenarios, sizes, seeds = plan(args)
    earlier = None
    if args.against:
        try:
            earlier = earlier_rows(args.against, seeds, sizes)
        except ValueError as error:
            parser.error(f"--against: {error}")
    fits = ((args.column,) if args.column else FITS[:2]) + (FITS[2:] if args.subtasks else ())
    result, rows = benchmark(args.datasets, scenarios, sizes, seeds, config, fits)
    print(table(result, scenarios))
    if args.subtasks:
        print(subtasks_table(result, scenarios))
    if earlier is not None:
        result["against"] = against(rows, earlier)
        print(json.dumps(result["against"], indent=1))
    if args.rows:
        # Why the ignore below: numpy's savez stubs type **kwds as ArrayLike only.
        np.savez(args.rows, **rows, **pairing(seeds, sizes))  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
