"""The semi-synthetic benchmark's label generator (``bench.router_semisynthetic``): real prompts,
simulated per-model correctness with known structure.

The prompts are read from ``--datasets`` (never copied: ``routellm_mmlu.csv``,
``routerbench_arc_challenge_{train,test}.csv``, ``routerbench_mbpp_{train,test}.csv``; three tasks,
one per source); the labels of 7 equal-price models are drawn from this seeded model:

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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.router_floor import question_texts

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
NEGATION = re.compile(r"\b(not|except|least|false|never|cannot)\b", re.I)
CODE = re.compile(r"[()\[\]{}=<>]|\b(def|return|for|while|if|lambda|import|assert)\b")
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


def subtask_labels(pool: Pool) -> list[str]:
    """Each prompt's subtopic as a hierarchical task label, ``task/family`` (``mmlu/science``;
    ``task/other`` when no family matches): the subject given with the task column."""
    names = {task: [name for name, _ in FAMILIES[task]] + [OTHER] for task in TASKS}
    return [
        f"{t}/{names[t][g]}" for t, g in zip(pool.tasks.tolist(), pool.groups.tolist(), strict=True)
    ]
