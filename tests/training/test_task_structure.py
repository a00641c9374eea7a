"""Quality-only data from five task kinds, the task never named: the router finds the structure.

The independent evaluation's shape: MMLU-like, GSM8K-like math, CMMLU-like Chinese, ARC-like and
HumanEval-like code prompts, 7 models at one price, a different best model for every task and
no model best overall by much. Prompts are generated in each benchmark's layout (ARC's five-shot
prefix and instruction, MMLU's subject header, Chinese script, word problems with numbers, Python
stubs with doctests), so ARC-like and MMLU-like share multiple-choice vocabulary. At tradeoff 0
the router, trained without the task column, must reach the per-task best model's score on
held-out rows (chosen on the training rows) less a small margin, and beat the best single model.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.learner.report import report_build
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

CONFIG = TrainerConfig(folds=3, threads=1, boost_rounds=40)
TASKS = ("mmlu", "gsm8k", "cmmlu", "arc", "humaneval")
# Per task, each model's chance of a right answer: task k's best model is model-k (0.85), the
# others 0.55-0.70, so every model's overall mean is within 0.1 of the others'.
ACCURACY = np.array(
    [
        [0.85, 0.60, 0.65, 0.55, 0.60, 0.70, 0.65],
        [0.60, 0.85, 0.55, 0.65, 0.70, 0.60, 0.65],
        [0.65, 0.55, 0.85, 0.60, 0.65, 0.70, 0.60],
        [0.70, 0.65, 0.60, 0.85, 0.55, 0.65, 0.60],
        [0.55, 0.70, 0.65, 0.60, 0.85, 0.60, 0.70],
    ]
)
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


def _prompt(task: str, rng: np.random.Generator) -> str:
    if task == "mmlu":
        options = _options(rng, WORDS, 3)
        return (
            f"The following are multiple choice questions (with answers) about "
            f"{rng.choice(SUBJECTS)}.\n\n{' '.join(rng.choice(WORDS, size=12))}?\n"
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


def _data(rows_per_task: int, seed: int) -> tuple[TrainingData, np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = np.repeat(np.arange(len(TASKS)), rows_per_task)
    prompts = [_prompt(TASKS[k], rng) for k in kinds]
    scores = (rng.random((len(kinds), ACCURACY.shape[1])) < ACCURACY[kinds]).astype(float)
    data = TrainingData(
        prompts=prompts,
        models=[f"model-{j}" for j in range(ACCURACY.shape[1])],
        scores=scores,
        costs=np.ones_like(scores),
        binary=[True] * ACCURACY.shape[1],
        costs_known=False,
    )
    return data, kinds


@pytest.fixture(scope="module")
def held_out() -> tuple[dict, TrainingData, np.ndarray, TrainingData, np.ndarray]:
    train, train_kinds = _data(90, seed=0)
    test, test_kinds = _data(120, seed=1)
    router = router_fit(train, CONFIG).router
    report = report_build(
        router=router,
        predicted=router.predict_many(test.prompts),
        prompts=test.prompts,
        scores=test.scores,
        costs=test.costs,
        evaluation={"method": "holdout"},
    )
    return report, train, train_kinds, test, test_kinds


def test_tradeoff_zero_reaches_the_per_task_floor_without_the_task_column(
    held_out: tuple[dict, TrainingData, np.ndarray, TrainingData, np.ndarray],
) -> None:
    report, train, train_kinds, test, test_kinds = held_out
    # the per-task best model, chosen on the training rows, scored on the held-out rows
    best = [int(np.argmax(train.scores[train_kinds == k].mean(axis=0))) for k in range(5)]
    floor = float(test.scores[np.arange(len(test_kinds)), np.array(best)[test_kinds]].mean())
    best_single = float(test.scores.mean(axis=0).max())
    assert floor > best_single + 0.1  # the data has task structure worth finding

    assert report["curve"][0]["score"] >= floor - 0.01
    assert report["curve"][0]["score"] > best_single + 0.08
