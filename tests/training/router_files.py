"""A stored router's files in tests: reload them, damage their arrays, check serving decisions."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

from training.learner import artifacts
from training.learner.router import TrainedRouter, mix_key, mix_keys


def reloaded(files: dict[str, bytes]) -> TrainedRouter:
    """The router a serving process would load from ``files``."""
    digests = artifacts.files_digests(files)
    return artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))


def arrays_damage(
    files: dict[str, bytes], damage: Callable[[dict[str, np.ndarray]], object]
) -> None:
    """Rewrite ``files``' arrays file with ``damage`` applied to its arrays."""
    with np.load(io.BytesIO(files[artifacts.ARRAYS_FILE]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    damage(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files[artifacts.ARRAYS_FILE] = buffer.getvalue()


def assert_serving_decides_as_the_batch(router: TrainedRouter, prompts: list[str]) -> None:
    """One prompt at a time (the serving path) decides as the batch path, incumbent included."""
    predicted = router.predict_many(prompts)
    incumbents = router.cluster_incumbents(prompts)
    assert incumbents is not None
    batch = router.choose_many(predicted, 0.0, mix_keys(prompts), incumbents)
    for i, prompt in enumerate(prompts):
        scores, incumbent = router.predict_one_with_incumbent(prompt)
        assert incumbent == incumbents[i]
        utility = router.utilities(scores, 0.0, mix_key(prompt), None, incumbent)
        assert int(np.argmax(utility)) == batch[i]
