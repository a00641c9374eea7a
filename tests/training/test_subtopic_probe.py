"""The subtopic probe's methods (bench/router_subtopic_probe.py) find a subject-level specialist
inside a task when the subject's vocabulary shows it, and stay at the per-task floor when there
is none: generated prompts, two tasks, two subjects each."""

from __future__ import annotations

import numpy as np
import pytest

from bench.router_subtopic_probe import METHODS, probe_picks, vectorize

SUBJECTS = {
    "quiz/astronomy": "planet orbit comet galaxy telescope nebula asteroid eclipse",
    "quiz/law": "court statute plaintiff verdict contract tort appeal jury",
    "code/strings": "string substring vowel uppercase palindrome character regex token",
    "code/graphs": "graph vertex edge path cycle tree node traversal",
}
FILLER = [
    "please",
    "answer",
    "the",
    "following",
    "question",
    "carefully",
    "about",
    "this",
    "topic",
    "today",
]
BEST = {"quiz": 0, "code": 1}
SPECIALIST = {"quiz/astronomy": 2, "code/graphs": 3}  # the other subject keeps the task's best


def _data(rows: int, subtopic: bool, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    names = list(SUBJECTS)
    prompts, tasks, scores = [], [], np.zeros((rows, 4))
    for i in range(rows):
        subject = names[rng.integers(len(names))]
        words = rng.choice(SUBJECTS[subject].split(), 3).tolist() + rng.choice(FILLER, 5).tolist()
        prompts.append(" ".join(rng.permutation(words)))
        task = subject.split("/")[0]
        tasks.append(task)
        accuracy = np.full(4, 0.6)
        accuracy[BEST[task]] = 0.85
        if subtopic and subject in SPECIALIST:
            accuracy[SPECIALIST[subject]] = 0.97
        scores[i] = rng.random(4) < accuracy
    return prompts, np.array(tasks), scores


def _served(subtopic: bool, method: str) -> tuple[float, float]:
    prompts, tasks, scores = _data(800, subtopic, seed=3)
    inner, outer = np.arange(500), np.arange(500, 800)
    x = vectorize([prompts[i] for i in inner], prompts)
    picks = probe_picks(x, scores, tasks, inner, outer, seed=0, only=method)
    rows = scores[outer]
    served = {name: float(rows[np.arange(len(outer)), p].mean()) for name, p in picks.items()}
    return served[method], served["floor"]


@pytest.mark.parametrize("method", list(METHODS))
def test_a_subject_specialist_lifts_the_method_above_the_per_task_floor(method: str) -> None:
    score, floor = _served(subtopic=True, method=method)

    assert score > floor + 0.015  # the specialists are worth +0.06


@pytest.mark.parametrize("method", list(METHODS))
def test_without_subjects_the_method_stays_near_the_per_task_floor(method: str) -> None:
    score, floor = _served(subtopic=False, method=method)

    assert score >= floor - 0.02
