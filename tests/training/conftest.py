"""Fixtures for training tests: eager Celery, private media storage and small datasets."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.celery_conf import celery_conf
from tests.routing.conftest import gateway_server

__all__ = ["gateway_server"]  # the fixture (tests/routing's), for the run-concurrency tests

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
TRAINING_TESTS = Path(__file__).resolve().parent

MATH = ["Compute {a} + {b} * {c}.", "Solve for x: {a}x = {b}.", "What is {a} squared minus {c}?"]
PROSE = [
    "Write a short poem about the {w} at dawn.",
    "Describe the {w} in a gentle tone.",
    "Summarise a story about a {w} and a friend.",
]
WORDS = ["river", "forest", "lantern", "harbour", "meadow", "violin", "garden", "comet"]


def synthetic_frame(rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """Two kinds of prompts: 'math-model' is right on arithmetic, 'prose-model' on writing.

    'math-model' is cheap, 'prose-model' expensive, and 'prose-model' is the better model on
    average, so a router can beat the best single model on cost (and on quality).
    """
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        is_math = i % 3 == 0
        if is_math:
            template = MATH[i % len(MATH)]
            prompt = template.format(
                a=rng.integers(2, 99), b=rng.integers(2, 99), c=rng.integers(2, 9)
            )
        else:
            prompt = PROSE[i % len(PROSE)].format(w=WORDS[i % len(WORDS)]) + f" (#{i})"
        noise = rng.random(2)
        records.append(
            {
                "prompt": prompt,
                "math-model/score": int(noise[0] < (0.95 if is_math else 0.35)),
                "prose-model/score": int(noise[1] < (0.55 if is_math else 0.95)),
                "math-model/cost": 0.001,
                "prose-model/cost": 0.01,
            }
        )
    return pd.DataFrame.from_records(records)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture
def media(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def eager_celery(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Celery tasks run in the test's process. Outside ``tests/training/`` (and without the
    ``real_training`` marker) a router's fit is shared by the runs with the same training
    input (``tests/shared_fits.py``): those tests are about what a trained router does."""
    if TRAINING_TESTS not in request.node.path.parents and not request.node.get_closest_marker(
        "real_training"
    ):
        from tests.shared_fits import shared_fit
        from training import execution

        monkeypatch.setattr(
            execution, "router_fit_sampled", shared_fit(execution.router_fit_sampled)
        )
    with celery_conf(task_always_eager=True):
        yield


@pytest.fixture
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "routellm_mmlu.csv").exists():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
