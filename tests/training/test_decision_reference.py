"""``Predictor.rank`` (the serving fast path: one gather for the SVD and linear heads, the
flattened forest, the cached policy arrays, the integer char n-gram index) decides exactly as the
plain path does (the sparse TF-IDF matrix, ``Booster.predict`` per head, ``TrainedRouter.utilities``)
on a router trained on RouterBench ARC: 11 candidates, prompt clusters, a policy table."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.conftest import SHARED_DATASETS
from training.learner import artifacts
from training.learner.featurizer import FeaturizerConfig
from training.learner.router import TrainedRouter, mix_key
from training.learner.trainer import TrainerConfig, TrainingData, router_fit
from training.predictor import Predictor

ARC_TRAIN = SHARED_DATASETS / "routerbench_arc_challenge_train.csv"
ARC_TEST = SHARED_DATASETS / "routerbench_arc_challenge_test.csv"
NOT_MODELS = {"Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
# Fewer terms than a production fit (30k + 20k) keep the linear heads' fits to seconds.
SMALL_VOCABULARY = FeaturizerConfig(word_max_features=4000, char_max_features=4000)
ODD_PROMPTS = [
    "",
    "?",
    "日本語のテキストと中文的问题 — 한국어",
    "def f(x):\n    return x ** 2  # 12345 67890 qqqq zzzz\n" * 20,
    "Ünïcödé wörds never seen: ꙮꙮꙮ 🙂 \t\n  x",
]


def _frame(path: Path, rows: int) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.head(rows)


@pytest.fixture(scope="module")
def arc() -> tuple[TrainedRouter, Predictor]:
    if not ARC_TRAIN.exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    frame = _frame(ARC_TRAIN, 250)
    models = [c for c in frame.columns if "|" not in c and c not in NOT_MODELS]
    data = TrainingData(
        prompts=frame["prompt"].astype(str).tolist(),
        models=models,
        scores=frame[models].fillna(0.0).to_numpy(dtype=np.float64),
        costs=frame[[f"{m}|total_cost" for m in models]].fillna(0.0).to_numpy(dtype=np.float64),
        binary=[True] * len(models),
    )
    fitted = router_fit(
        data, TrainerConfig(folds=2, boost_rounds=40, featurizer=SMALL_VOCABULARY)
    ).router
    files = artifacts.router_to_files(fitted)
    digests = artifacts.files_digests(files)
    served = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    return fitted, Predictor(1, "checksum", served)


def _prompts() -> list[str]:
    pool = pd.read_csv(ARC_TEST, usecols=["prompt"])["prompt"].astype(str).tolist()
    rng = random.Random(0)
    out = []
    for size in (200, 2048, 2048, 2048, 4096):
        text = ""
        while len(text) < size:
            text += rng.choice(pool) + "\n"
        out.append(text[:size])
    return out + ODD_PROMPTS


def _reference(
    router: TrainedRouter, prompt: str, tradeoff: float, chosen: list[int]
) -> list[tuple[str, float, float]]:
    predicted = router.predict_many([prompt])[0][chosen]
    incumbents = router.cluster_incumbents([prompt])
    incumbent = None if incumbents is None else int(incumbents[0])
    utility = router.utilities(predicted, tradeoff, mix_key(prompt), chosen, incumbent)
    order = np.lexsort((router.mean_costs[chosen], -utility))
    return [(router.models[chosen[k]], float(predicted[k]), float(utility[k])) for k in order]


def test_rank_decides_as_the_reference_path_on_a_trained_arc_router(
    arc: tuple[TrainedRouter, Predictor],
) -> None:
    fitted, predictor = arc
    assert len(fitted.models) == 11 and fitted.clusters is not None
    subsets = [list(range(11)), [0, 4, 5, 9], [5, 2]]
    checked = 0
    for prompt in _prompts():
        for tradeoff in (0.0, 0.3, 0.5, 0.8, 1.0):
            for chosen in subsets:
                expected = _reference(fitted, prompt, tradeoff, chosen)
                names = [fitted.models[i] for i in chosen]

                ranked = predictor.rank(prompt, tradeoff, names)

                assert [r.model for r in ranked] == [m for m, _, _ in expected], (
                    prompt[:40],
                    tradeoff,
                )
                for got, (_, score, utility) in zip(ranked, expected, strict=True):
                    assert got.score == pytest.approx(score, abs=1e-9)
                    assert got.utility == pytest.approx(utility, abs=1e-9)
                checked += 1
    assert checked == len(_prompts()) * 5 * len(subsets)


def test_a_prompt_decides_alike_on_first_sight_and_when_its_words_are_memoised(
    arc: tuple[TrainedRouter, Predictor],
) -> None:
    fitted, _ = arc
    files = artifacts.router_to_files(fitted)
    digests = artifacts.files_digests(files)
    fresh = Predictor(2, "fresh", artifacts.router_from_files(
        files, digests, artifacts.manifest_checksum(digests)))  # fmt: skip
    prompts = _prompts()

    first = [fresh.rank(p, 0.5) for p in prompts]
    again = [fresh.rank(p, 0.5) for p in prompts]

    assert first == again


def test_a_version_decides_to_the_last_bit_alike_with_and_without_its_serving_form(
    arc: tuple[TrainedRouter, Predictor],
) -> None:
    """The serving form (``serving.npz``, stored at training) against the files of an older
    version, which build the same forest, projection and tables on their first decision."""
    fitted, predictor = arc
    files = artifacts.router_to_files(fitted)
    older = {name: content for name, content in files.items() if name != artifacts.SERVING_FILE}
    digests = artifacts.files_digests(older)
    plain = Predictor(3, "older", artifacts.router_from_files(
        older, digests, artifacts.manifest_checksum(digests)))  # fmt: skip
    subsets = [None, [fitted.models[i] for i in (0, 4, 5, 9)], [fitted.models[i] for i in (5, 2)]]

    for prompt in _prompts():
        for tradeoff in (0.0, 0.3, 0.5, 0.8, 1.0):
            for names in subsets:
                # RankedModel tuples: models, and scores and utilities compared exactly.
                assert predictor.rank(prompt, tradeoff, names) == plain.rank(
                    prompt, tradeoff, names
                ), (prompt[:40], tradeoff)
    assert artifacts.SERVING_FILE in files
