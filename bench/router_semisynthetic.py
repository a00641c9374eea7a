"""Semi-synthetic quality-only benchmark: real prompts, simulated correctness with known structure.

    nice .venv/bin/python -m bench.router_semisynthetic --datasets ../shared/datasets [--quick]

Does the router exploit structure *inside* a task where it exists? The real quality-only data
(``bench.router``'s ARC + MBPP, 7 RouterBench models) has none to find, so it cannot say. Here
the PROMPTS are real (read from ``--datasets``, never copied: ``routellm_mmlu.csv``,
``routerbench_arc_challenge_{train,test}.csv``, ``routerbench_mbpp_{train,test}.csv``; three tasks,
one per source) and the per-model correctness LABELS of 7 equal-price models are drawn from the
seeded generative model below, each kind of structure switchable, so their effects read apart.

P(model j right on prompt i of task t) = sigmoid(logit_ij), where logit_ij sums:
(a) ``task``: logit(BASE_ACCURACY[t, j]): a different best model per task (0.85 against
    0.55-0.70; overall means within ~0.1). Off: logit(0.68) for every model and task.
(b) ``subtopic``: +SUBTOPIC_BOOST for the task's specialist of the prompt's subtopic
    (SPECIALISTS; never the task's best). A subtopic is the first keyword family (FAMILIES, word
    regexes on the question text, template removed) the question matches: MMLU math/formulae,
    science, society (law, politics, history, economics); ARC life, earth and space, physical;
    MBPP strings, sequences, numbers; "other" when none matches, which has no specialist.
(c) ``prompt``: a per-prompt difficulty d_i = OBSERVED_SHARE * o_i + sqrt(1 - OBSERVED_SHARE^2)
    * h_i, where o_i is observable (the mean of within-task z-scores of the question's log
    length, digit share, negation words and code constructs, standardised) and h_i ~ N(0, 1) is
    hidden; it adds -COMMON_DIFFICULTY * d_i to every model and APTITUDE_SCALE * APTITUDE[j] *
    d_i to model j, so some models are best on hard prompts and others on easy ones.
The labels are Bernoulli draws of these probabilities (the label noise, with the hidden h_i).
(d) ``mc``: ARC's prompts lose their five-shot prefix and instruction and take MMLU's layout
    (``Q / A. ... / Answer:``), so MMLU and ARC share one multiple-choice format: does the router
    still tell the two tasks apart?

Each seed samples disjoint train/test prompts per task (shares TASK_SHARES, MBPP capped by its
425 prompts), draws labels, fits the learner directly (``router_fit`` with the default
``TrainerConfig`` but one thread, as ``bench.router_embeddings``) once without and once with the
task column (``TrainingData.tasks``), and scores tradeoff 0 on the test rows (``report_build``'s
curve). References, every choice made on the train rows: the best single model, the per-task
floor (each task's best model), the per-subtopic floor (each (task, subtopic)'s best model);
``observable`` (the generator's own best model from what the text shows: task, subtopic, o_i)
and the oracle (a right model whenever one exists) are ceilings; ``heads`` (the argmax of the
router's predicted scores, without its policy) is a diagnostic, and ``word_heads`` a plain
supervised reference given the task (``bench.router_floor.heads`` on word TF-IDF). Intervals: paired bootstrap 95%
of the per-row router - per-task floor (and - per-subtopic floor), test rows of all seeds pooled.
A full run (5 scenarios x 3 seeds x 2 fits of 2,000 rows) took 6.9 CPU minutes; ``--quick`` is a
smoke run (400/200 rows, one seed, two scenarios, 3 folds and 40 boosting rounds).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bench.router_floor import heads, question_texts
from training.learner import metrics
from training.learner.report import report_build
from training.learner.router import mix_keys
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

TASKS = ("mmlu", "arc", "mbpp")
MODELS = tuple(f"model-{j}" for j in range(7))
TASK_SHARES = (0.5, 0.35, 0.15)
# (a) per task (rows) and model (columns): the chance of a right answer; the best differs per task
BASE_ACCURACY = np.array(
    [
        [0.85, 0.60, 0.65, 0.62, 0.60, 0.70, 0.65],
        [0.60, 0.85, 0.55, 0.65, 0.70, 0.60, 0.65],
        [0.55, 0.65, 0.85, 0.70, 0.65, 0.60, 0.60],
    ]
)
FLAT_ACCURACY = 0.68
# (b) keyword families, tried in order on the question text; a prompt matching none is "other"
_MATH = r"\d\s*[-+*/^=<>]\s*\d|\b(equations?|integers?|probability|functions?|polynomials?|"
_MATH += r"matrix|derivative|sqrt|log|theorem|group|ring|field)\b"
_SCIENCE = r"\b(cells?|genes?|proteins?|atoms?|molecules?|energy|chemical|reactions?|organisms?|"
_SCIENCE += r"species|dna|electrons?|enzymes?|force|mass|velocity|patients?|disease|blood)\b"
_SOCIETY = r"\b(laws?|court|legal|constitution\w*|contracts?|defendant|plaintiff|statute|"
_SOCIETY += r"government|congress|president|rights|policy|tax|war|century|empire|king|economy|"
_SOCIETY += r"economic|market|prices?|social|society|cultur\w*|religio\w*)\b"
FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    "mmlu": (("math", _MATH), ("science", _SCIENCE), ("society", _SOCIETY)),
    "arc": (
        (
            "life",
            r"\b(plants?|animals?|cells?|organisms?|species|food|traits?|body|genes?|seeds?|"
            r"habitats?)\b",
        ),
        (
            "earth_space",
            r"\b(earth|sun|moon|planets?|stars?|rocks?|soil|weather|water|ocean|"
            r"volcano\w*|climate|minerals?|erosion)\b",
        ),
        (
            "physical",
            r"\b(energy|force|heat|light|electric\w*|magnet\w*|motion|sound|mass|"
            r"temperature|circuits?|speed|waves?)\b",
        ),
    ),
    "mbpp": (
        (
            "strings",
            r"\b(strings?|characters?|words?|vowels?|regex|substrings?|letters?|"
            r"uppercase|lowercase)\b",
        ),
        ("sequences", r"\b(lists?|arrays?|tuples?|dictionar\w+|matrix|elements?|sublists?)\b"),
        (
            "numbers",
            r"\b(numbers?|integers?|digits?|prime|sum|factorial|binary|bits?|even|odd|"
            r"divisible)\b",
        ),
    ),
}
OTHER = "other"
SPECIALISTS = {"mmlu": (3, 4, 5), "arc": (4, 5, 6), "mbpp": (6, 3, 4)}  # per family, in order
SUBTOPIC_BOOST = 2.2  # logits: a 0.60 model becomes 0.93 on its subtopic
# (c) per model: + on hard prompts, - on easy ones
APTITUDE = np.array([0.3, -0.3, 0.0, 1.0, -1.0, 0.6, -0.6])
APTITUDE_SCALE = 2.0
COMMON_DIFFICULTY = 0.6
OBSERVED_SHARE = 0.8
WORD_HEADS_C = 1.0
NEGATION = re.compile(r"\b(not|except|least|false|never|cannot)\b", re.I)
CODE = re.compile(r"[()\[\]{}=<>]|\b(def|return|for|while|if|lambda|import|assert)\b")
COLUMN_CHOICES = ("without", "with")  # the router fitted without / with the task column
OPTION = re.compile(r"^\(?([A-E])[).:]\s*(.*)$")


@dataclass(frozen=True)
class Structure:
    """Which kinds of structure the labels carry (module docstring, (a)-(d))."""

    task: bool = True
    subtopic: bool = False
    prompt: bool = False
    mc: bool = False

    @property
    def name(self) -> str:
        kinds = [k for k in ("task", "subtopic", "prompt", "mc") if getattr(self, k)]
        return "+".join(kinds) or "none"


SCENARIOS = (
    Structure(),
    Structure(subtopic=True),
    Structure(prompt=True),
    Structure(subtopic=True, prompt=True),
    Structure(mc=True),
)


@dataclass(frozen=True)
class Pool:
    """Every distinct prompt of the three sources, with what the generator reads off its text."""

    prompts: list[str]
    tasks: np.ndarray  # (n,) task name
    groups: np.ndarray  # (n,) subtopic index within the task's FAMILIES; len(FAMILIES[t]) = other
    observed: np.ndarray  # (n,) o_i, standardised within the task
    mc_prompts: list[str]  # the prompts with ARC in MMLU's layout, (d)


def _task_prompts(datasets: Path) -> dict[str, list[str]]:
    def read(*names: str) -> list[str]:
        frames = [pd.read_csv(datasets / name, usecols=["prompt"]) for name in names]
        return pd.concat(frames)["prompt"].astype(str).drop_duplicates().tolist()

    return {
        "mmlu": read("routellm_mmlu.csv"),
        "arc": read(*(f"routerbench_arc_challenge_{s}.csv" for s in ("train", "test"))),
        "mbpp": read(*(f"routerbench_mbpp_{s}.csv" for s in ("train", "test"))),
    }


def subtopic(task: str, question: str) -> int:
    """The index of the first keyword family of ``task`` the question matches (else "other")."""
    families = FAMILIES[task]
    for index, (_, pattern) in enumerate(families):
        if re.search(pattern, question, re.I):
            return index
    return len(families)


def observed_difficulty(questions: list[str]) -> np.ndarray:
    """o_i: the mean z-score of log length, digit share, negation and code constructs."""
    raw = np.array(
        [
            [
                np.log1p(len(q)),
                sum(c.isdigit() for c in q) / max(len(q), 1),
                float(bool(NEGATION.search(q))),
                np.log1p(len(CODE.findall(q))),
            ]
            for q in questions
        ]
    )
    z = (raw - raw.mean(axis=0)) / np.maximum(raw.std(axis=0), 1e-9)
    combined = z.mean(axis=1)
    return np.asarray((combined - combined.mean()) / max(float(combined.std()), 1e-9))


def mmlu_layout(question: str) -> str:
    """An ARC question (template removed) in MMLU's layout: ``Q\\nA. x\\n...\\nAnswer:``."""
    lines = [s.strip() for s in re.split(r"\\n|\n", question) if s.strip()]
    out = [f"{m.group(1)}. {m.group(2)}" if (m := OPTION.match(s)) else s for s in lines]
    return "\n".join(out) + "\nAnswer:"


def prompt_pool(datasets: Path) -> Pool:
    """Read the prompts and the generator's observables (questions: templates removed)."""
    prompts, tasks, groups, observed, mc_prompts = [], [], [], [], []
    for task, texts in _task_prompts(datasets).items():
        questions = question_texts(texts)
        prompts += texts
        tasks += [task] * len(texts)
        groups += [subtopic(task, q) for q in questions]
        observed.append(observed_difficulty(questions))
        mc_prompts += [mmlu_layout(q) for q in questions] if task == "arc" else texts
    return Pool(prompts, np.array(tasks), np.array(groups), np.concatenate(observed), mc_prompts)


def _logit(p: float | np.ndarray) -> np.ndarray:
    return np.asarray(np.log(p) - np.log1p(-np.asarray(p)))


def label_logits(pool: Pool, structure: Structure, hidden: np.ndarray | None = None) -> np.ndarray:
    """(n, 7) logit of each model being right; ``hidden`` (n,) h_i, None: 0 (what text shows)."""
    n, width = len(pool.prompts), len(MODELS)
    task_index = np.array([TASKS.index(t) for t in pool.tasks])
    if structure.task:
        logits = _logit(BASE_ACCURACY)[task_index]
    else:
        logits = np.full((n, width), float(_logit(FLAT_ACCURACY)))
    if structure.subtopic:
        for t, task in enumerate(TASKS):
            for g, model in enumerate(SPECIALISTS[task]):
                logits[(task_index == t) & (pool.groups == g), model] += SUBTOPIC_BOOST
    if structure.prompt:
        h = np.zeros(n) if hidden is None else hidden
        d = OBSERVED_SHARE * pool.observed + np.sqrt(1 - OBSERVED_SHARE**2) * h
        logits += d[:, None] * (APTITUDE_SCALE * APTITUDE[None, :] - COMMON_DIFFICULTY)
    return np.asarray(logits)


def labels_draw(pool: Pool, structure: Structure, seed: int) -> np.ndarray:
    """(n, 7) 0/1 labels of every prompt of the pool, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, 20])
    hidden = rng.standard_normal(len(pool.prompts))
    probability = 1 / (1 + np.exp(-label_logits(pool, structure, hidden)))
    return (rng.random(probability.shape) < probability).astype(float)


def split_rows(pool: Pool, train: int, test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train and test row indices, TASK_SHARES of each (capped by what a task has)."""
    rng = np.random.default_rng([seed, 21])
    train_rows, test_rows = [], []
    for task, share in zip(TASKS, TASK_SHARES, strict=True):
        rows = rng.permutation(np.flatnonzero(pool.tasks == task))
        a = min(round(train * share), int(len(rows) * train / (train + test)))
        b = min(round(test * share), len(rows) - a)
        train_rows.append(rows[:a])
        test_rows.append(rows[a : a + b])
    return np.concatenate(train_rows), np.concatenate(test_rows)


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
    columns: tuple[str, ...] = COLUMN_CHOICES,
) -> dict[str, np.ndarray]:
    """One seed of one scenario: per test row, each policy's score (the router fitted
    ``without`` and/or ``with`` the task column)."""
    labels = labels_draw(pool, structure, seed)
    train, test = split_rows(pool, *sizes, seed)
    prompts = pool.mc_prompts if structure.mc else pool.prompts
    picks = reference_picks(pool, structure, labels, train, test)
    picks["word_heads"] = word_heads_picks(prompts, labels, pool.tasks, train, test)
    test_data = _training_data([prompts[i] for i in test], labels[test], pool.tasks[test].tolist())
    for column, tasks in (("without", None), ("with", pool.tasks[train].tolist())):
        if column not in columns:
            continue
        train_data = _training_data([prompts[i] for i in train], labels[train], tasks)
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
    for router in ("router_without_tasks", "router_with_tasks"):
        if router not in pooled:
            continue
        for floor in ("task_floor", "subtopic_floor"):
            gain = pooled[router] - pooled[floor]
            out[f"{router} - {floor}"] = {
                "mean": round(float(gain.mean()), 4),
                "ci95": _interval(gain),
            }
    return out


def benchmark(
    datasets: Path,
    scenarios: tuple[Structure, ...],
    sizes: tuple[int, int],
    seeds: list[int],
    config: TrainerConfig,
    columns: tuple[str, ...] = COLUMN_CHOICES,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Each scenario's summary, and every policy's per-row scores (``scenario/policy``: the
    test rows of all seeds pooled, in seed order)."""
    pool = prompt_pool(datasets)
    result: dict[str, Any] = {"train_rows": sizes[0], "test_rows": sizes[1], "seeds": seeds}
    rows: dict[str, np.ndarray] = {}
    for structure in scenarios:
        per_seed = [run_seed(pool, structure, sizes, seed, config, columns) for seed in seeds]
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
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    for structure in scenarios:
        row = result[structure.name]
        gaps = [row.get(f"router_{c}_tasks - task_floor") for c in ("without", "with")]
        cis = " / ".join(
            f"{g['mean']:+.4f} ({g['ci95'][0]:+.4f} … {g['ci95'][1]:+.4f})" if g else "—"
            for g in gaps
        )
        cells = " | ".join(_cell(row, c, ".4f") for c in COLUMNS)
        off = " / ".join(_cell(row, f"{c} deviates", ".1%") for c in DEVIATING)
        lines.append(f"| {structure.name} | {cells} | {cis} | {off} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke: 400/200 rows, one seed, two scenarios, 3 folds and 40 boosting rounds",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="+", choices=[s.name for s in SCENARIOS])
    parser.add_argument(
        "--column", choices=COLUMN_CHOICES, help="fit the router only without / with the column"
    )
    parser.add_argument("--rows", type=Path, help="save every policy's per-row scores (.npz)")
    parser.add_argument(
        "--against", type=Path, help="an earlier run's --rows: paired router differences"
    )
    args = parser.parse_args()
    config = TrainerConfig(threads=1)
    scenarios, sizes, seeds = SCENARIOS, (args.train, args.test), args.seeds
    if args.only:
        scenarios = tuple(s for s in SCENARIOS if s.name in args.only)
    if args.quick:
        config = replace(config, folds=3, boost_rounds=40)
        scenarios, sizes, seeds = (SCENARIOS[0], SCENARIOS[3]), (400, 200), seeds[:1]
    columns = (args.column,) if args.column else COLUMN_CHOICES
    result, rows = benchmark(args.datasets, scenarios, sizes, seeds, config, columns)
    print(table(result, scenarios))
    if args.against:
        with np.load(args.against) as npz:
            result["against"] = against(rows, {k: npz[k] for k in npz.files})
        print(json.dumps(result["against"], indent=1))
    if args.rows:
        # Why the ignore below: numpy's savez stubs type **kwds as ArrayLike only.
        np.savez(args.rows, **rows)  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
