"""Prompts in the layout of five benchmarks (MMLU, GSM8K, CMMLU, ARC, HumanEval) for tests of
the router's task structure: ARC's five-shot prefix and instruction, MMLU's subject header,
Chinese script, word problems with numbers, Python stubs with doctests; and the held-out report
those tests score a router by."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.learner.report import report_build
from training.learner.router import TrainedRouter
from training.learner.trainer import TrainingData

TASKS = ("mmlu", "gsm8k", "cmmlu", "arc", "humaneval")

WORDS = [
    "energy",
    "plant",
    "cell",
    "water",
    "rock",
    "force",
    "heat",
    "light",
    "animal",
    "soil",
    "planet",
    "moon",
    "gas",
    "liquid",
    "solid",
    "law",
    "court",
    "trade",
    "market",
    "price",
    "theory",
    "history",
    "empire",
    "treaty",
    "nerve",
    "organ",
    "acid",
    "metal",
    "wave",
]
SUBJECTS = ("biology", "economics", "world history", "chemistry", "physics", "philosophy")
NAMES = ("Ava", "Liam", "Noah", "Mia", "Zoe", "Omar", "Ines", "Ravi")
ITEMS = ("apples", "marbles", "books", "stickers", "coins", "cookies")
HAN = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
ARC_INSTRUCTION = 'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.'
ARC_PREFIX = "".join(
    f"Which {w} is most likely to change when heated?\nA) {w} size\nB) colour\nC) mass\n"
    f"D) charge\n{ARC_INSTRUCTION}\nAnswer:\n{'ABCD'[i % 4]}\n\n"
    for i, w in enumerate(("metal", "gas", "liquid", "rock", "ice"))
)


def _options(rng: np.random.Generator, words: list[str] | tuple[str, ...], size: int) -> list[str]:
    return [" ".join(rng.choice(words, size=size)) for _ in range(4)]


def task_prompt(
    task: str,
    rng: np.random.Generator,
    subject: str | None = None,
    question_words: list[str] | None = None,
) -> str:
    """One prompt of ``task`` (one of ``TASKS``); an MMLU one is about ``subject`` (by default
    one of ``SUBJECTS``) and ends its question of twelve words with ``question_words``."""
    if task == "mmlu":
        options = _options(rng, WORDS, 3)
        header = subject or rng.choice(SUBJECTS)
        words = [*rng.choice(WORDS, size=12 - len(question_words or [])), *(question_words or [])]
        return (
            f"The following are multiple choice questions (with answers) about "
            f"{header}.\n\n{' '.join(words)}?\n"
            + "".join(f"{'ABCD'[i]}. {o}\n" for i, o in enumerate(options))
            + "Answer:"
        )
    if task == "gsm8k":
        a, b, c = rng.integers(2, 90, size=3)
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        return (
            f"{name} has {a} {item}. {name} buys {b} more {item} and gives {c} to a friend. "
            f"Each of the {item} costs ${rng.integers(1, 9)}. How many {item} does {name} have "
            "now? Let's think step by step."
        )
    if task == "cmmlu":
        options = ["".join(rng.choice(HAN, size=4)) for _ in range(4)]
        return (
            "以下是关于"
            + "".join(rng.choice(HAN, size=2))
            + "的单项选择题，请直接给出正确答案的选项。\n"
            "题目："
            + "".join(rng.choice(HAN, size=20))
            + "？\n"
            + "".join(f"{'ABCD'[i]}. {o}\n" for i, o in enumerate(options))
            + "答案是："
        )
    if task == "arc":
        options = _options(rng, WORDS, 2)
        return (
            ARC_PREFIX
            + f"Which {' '.join(rng.choice(WORDS, size=8))}?\n"
            + "".join(f"{'ABCD'[i]}) {o}\n" for i, o in enumerate(options))
            + f"{ARC_INSTRUCTION}\nAnswer:"
        )
    name = "_".join(rng.choice(WORDS, size=2))
    value = rng.integers(0, 50)
    return (
        f"from typing import List\n\n\ndef {name}(values: List[int], k: int) -> int:\n"
        f'    """Return the {" ".join(rng.choice(WORDS, size=5))} of values.\n'
        f"    >>> {name}([{value}, {value + 3}], {value % 7})\n    {value * 2}\n"
        '    """\n'
    )


def holdout_report(
    router: TrainedRouter, test: TrainingData, tasks: list[str] | None = None
) -> dict[str, Any]:
    """The evaluation report of ``router`` on the held-out rows ``test`` (sliced by ``tasks``
    when given, else by cluster)."""
    return report_build(
        router=router,
        predicted=router.predict_many(test.prompts),
        prompts=test.prompts,
        scores=test.scores,
        costs=test.costs,
        evaluation={"method": "holdout"},
        tasks=tasks,
    )


def binary_data(
    prompts: list[str], scores: np.ndarray, tasks: list[str] | None = None
) -> TrainingData:
    """Quality-only data of binary ``scores`` (rows, models) from models ``model-0``… of equal
    price, whose costs are unknown."""
    models = scores.shape[1]
    return TrainingData(
        prompts=prompts,
        models=[f"model-{j}" for j in range(models)],
        scores=scores,
        costs=np.ones_like(scores),
        binary=[True] * models,
        costs_known=False,
        tasks=tasks,
    )


def labelled(
    prompts: list[str],
    best: list[int],
    chances: tuple[float, float],
    rng: np.random.Generator,
    *,
    models: int = 7,
    tasks: list[str] | None = None,
) -> TrainingData:
    """Quality-only data of equal-price models: the row's ``best`` model is right with the
    first of ``chances``, every other model with the second (Bernoulli draws from ``rng``)."""
    right, wrong = chances
    chance = np.full((len(prompts), models), wrong)
    chance[np.arange(len(prompts)), best] = right
    scores = (rng.random(chance.shape) < chance).astype(float)
    return binary_data(prompts, scores, tasks)
