"""A training run's input: a dataset's parsed rows, the candidates' scores turned
higher-is-better (``Orientation``) and the per-row costs the router learns from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training import ingest
from training.learner.trainer import TrainingData
from training.models import Dataset
from training.tokens import estimated_tokens


@dataclass
class Orientation:
    """Scores are turned higher-is-better for learning; ``display`` maps them back."""

    maximize: bool
    all_binary: bool

    def forward(self, scores: np.ndarray) -> np.ndarray:
        if self.maximize:
            return scores
        return 1.0 - scores if self.all_binary else -scores

    def display(self, value: float) -> float:
        if self.maximize:
            return value
        return 1.0 - value if self.all_binary else -value

    def display_many(self, scores: np.ndarray) -> np.ndarray:
        """``display`` of every score of an array."""
        if self.maximize:
            return scores
        return np.asarray(1.0 - scores if self.all_binary else -scores)


def load_parsed(dataset: Dataset) -> ingest.ParsedDataset:
    with dataset.parsed_file.open("rb") as handle:
        content = handle.read()
    summary = dataset.model_summary
    return ingest.normalized_from_parquet(
        content, [m["id"] for m in summary], [bool(m.get("binary")) for m in summary]
    )


def training_costs(
    parsed: ingest.ParsedDataset,
    columns: list[int],
    options: dict[str, Any],
    orientation: Orientation | None = None,
) -> tuple[np.ndarray, str]:
    """Per-row USD costs from the dataset, else from ``options.prices``, else rank-based (the
    better a model's mean score in ``orientation``'s direction, the higher its rank)."""
    if parsed.costs is not None:
        return parsed.costs[:, columns], "dataset"
    models = [parsed.models[j] for j in columns]
    prices = options.get("prices")
    if prices:
        price = np.array([prices[m] for m in models], dtype=np.float64)
        if options.get("price_unit") == "per_request":
            return np.tile(price, (len(parsed.prompts), 1)), "prices_per_request"
        tokens = np.array([estimated_tokens(p) for p in parsed.prompts])
        return np.outer(tokens, price) / 1e6, "prices_per_million_tokens"
    # Nothing known: assume the better a model scores, the more it costs (relative units 1..m).
    scores = parsed.scores[:, columns]
    oriented = orientation.forward(scores) if orientation is not None else scores
    ranks = np.argsort(np.argsort(oriented.mean(axis=0))) + 1.0
    return np.tile(ranks, (len(parsed.prompts), 1)), "rank"


def training_data(
    dataset: Dataset, candidates: list[str], options: dict[str, Any]
) -> tuple[TrainingData, Orientation, str]:
    parsed = load_parsed(dataset)
    columns = [parsed.models.index(c) for c in candidates]
    binary = [parsed.binary[j] for j in columns]
    orientation = Orientation(maximize=dataset.maximize, all_binary=all(binary))
    costs, source = training_costs(parsed, columns, options, orientation)
    data = TrainingData(
        prompts=parsed.prompts,
        models=list(candidates),
        scores=orientation.forward(parsed.scores[:, columns]),
        costs=costs,
        binary=binary,
        costs_known=source != "rank",
        tasks=parsed.tasks,
        task_parents=parsed.task_parents,
    )
    return data, orientation, source
