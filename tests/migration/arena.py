"""A synthetic battles file shaped like a Chatbot Arena export (``prompt, model_a, model_b,
winner``): the strong model wins hard prompts (proofs, code, analysis), easy prompts (greetings,
small talk) are mostly ties, and some hard prompts stump both (``tie (bothbad)``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

HARD = [
    "Prove that the sum of the first {n} odd numbers equals {n} squared, step by step.",
    "Write a Python function that merges {n} sorted lists of {w} records in O(n log k) time.",
    "Derive the closed form of the recurrence T(n) = {n} T(n/2) + n log n and justify each step.",
    "Explain why the {w} algorithm is not stable and give a counterexample with {n} items.",
    "Implement a thread-safe LRU cache of {n} {w} entries in Rust and analyse its complexity.",
]
EASY = [
    "Say hello to my friend {w} in a cheerful way.",
    "What is a nice name for a {w} pet?",
    "Tell me a short joke about a {w}.",
    "Give me {n} words that rhyme with {w}.",
    "Write a friendly one-line greeting for a {w} party.",
]
WORDS = ["banana", "harbour", "lantern", "meadow", "violin", "comet", "garden", "river",
         "falcon", "teapot", "glacier", "marble", "pepper", "saddle", "thimble", "willow"]  # fmt: skip


def _outcome(rng: np.random.Generator, hard: bool) -> str:
    """The winner from the strong model's point of view: strong, weak, tie or bothbad."""
    draw = rng.random()
    if hard:
        return "strong" if draw < 0.75 else "bothbad" if draw < 0.87 else "weak"
    return "tie" if draw < 0.45 else "strong" if draw < 0.7 else "weak"


def arena_battles(strong: str, weak: str, rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        hard = rng.random() < 0.5
        template = (HARD if hard else EASY)[int(rng.integers(5))]
        prompt = template.format(n=int(rng.integers(2, 400)), w=WORDS[int(rng.integers(16))])
        a, b = (strong, weak) if rng.random() < 0.5 else (weak, strong)
        result = _outcome(rng, hard)
        if result == "bothbad":
            winner = "tie (bothbad)"
        elif result == "tie":
            winner = "tie"
        else:
            winner = "model_a" if (strong if result == "strong" else weak) == a else "model_b"
        records.append({"question_id": f"q{i}", "prompt": prompt, "model_a": a, "model_b": b,
                        "winner": winner, "language": "English", "turn": 1})  # fmt: skip
    return pd.DataFrame.from_records(records)


def is_hard(prompt: str) -> bool:
    return any(prompt.startswith(t.split("{")[0]) for t in HARD)
