"""A router version's held-out predictions, kept beside its artifacts for later evaluations.

Training evaluates a version on rows its score heads never saw (out-of-fold rows, or the test
dataset's); those rows' predicted scores, actual scores and costs are saved once as
``<artifact prefix>/heldout.npz`` so a cascade over the router's models can be replayed on the
same rows (``training.learner.cascade``) without training again. Not an artifact the predictor
loads (``RouterVersion.artifact_files`` does not list it). At most ``HELDOUT_MAX_ROWS`` rows (a
seeded uniform sample past that): the file and any replay stay small, ~12 bytes a row a model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from training.learner.sampling import sample_indices
from training.models import RouterVersion

HELDOUT_FILE = "heldout.npz"
HELDOUT_MAX_ROWS = 50_000
_SEED = 0


@dataclass(frozen=True)
class HeldOut:
    models: list[str]
    predicted: np.ndarray  # (n, m) the router's predicted scores (the scale a pre-call gate uses)
    scores: np.ndarray  # (n, m) actual scores, in the dataset's units
    costs: np.ndarray  # (n, m) cost per request, as the router's report counts it

    @property
    def rows(self) -> int:
        return int(self.predicted.shape[0])


def heldout_path(artifact_prefix: str) -> str:
    return f"{artifact_prefix}/{HELDOUT_FILE}"


def heldout_save(artifact_prefix: str, held: HeldOut) -> None:
    """Store ``held`` (sampled down to ``HELDOUT_MAX_ROWS`` rows) beside the artifacts."""
    keep = sample_indices(held.rows, HELDOUT_MAX_ROWS, _SEED)
    arrays = {"predicted": held.predicted, "scores": held.scores, "costs": held.costs}
    if keep is not None:
        arrays = {name: values[keep] for name, values in arrays.items()}
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        models=np.asarray(held.models, dtype=str),
        predicted=np.asarray(arrays["predicted"], dtype=np.float32),
        scores=np.asarray(arrays["scores"], dtype=np.float32),
        costs=np.asarray(arrays["costs"], dtype=np.float32),
    )
    default_storage.save(heldout_path(artifact_prefix), ContentFile(buffer.getvalue()))


def heldout_load(version: RouterVersion) -> HeldOut | None:
    """The version's held-out rows, or None for a version trained before they were kept."""
    path = heldout_path(version.artifact_prefix)
    if not version.artifact_prefix or not default_storage.exists(path):
        return None
    with default_storage.open(path, "rb") as handle:
        content = handle.read()
    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
        return HeldOut(
            models=[str(m) for m in npz["models"]],
            predicted=npz["predicted"].astype(np.float64),
            scores=npz["scores"].astype(np.float64),
            costs=npz["costs"].astype(np.float64),
        )
