"""One fit per distinct training input for the session, for tests that are not about training.

Tests that serve, route, bill or announce with a router train it through the API first, and
many train the same small router on the same rows (``tests/serving/test_router_serving.py``'s
``train_router`` alone is used by a dozen). The run still goes all the way through: the API,
the eager Celery task, the claim, the evaluation and report, the artifacts saved to the test's
own media storage with their checksums, the version row, activation and events. Only the fit
(``router_fit_sampled``: featurizing, cross-validation, LightGBM) is computed once per key, the
sha256 of every field of the training data (prompts, models, scores, costs, flags, tasks and
their parent tasks) and the ``TrainerConfig``, and each later run gets its own copy of the result (unpickled from memory;
never written anywhere). The fit is seeded, so the copy is what training again would produce.

A later run still passes the fitting stage's cancel checkpoint (``progress``). Tests under
``tests/training/`` (the learner, progress, cancellation, memory and time limits), a test
marked ``real_training`` and any training in another process fit for real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pickle
from typing import Any

import numpy as np

from training.learner.trainer import STAGE_FITTING, FitResult, TrainerConfig, TrainingData

MAX_FITS = 32  # bounded: a few MB each
_fits: dict[str, bytes] = {}
stats = {"fitted": 0, "shared": 0}


def fit_key(data: TrainingData, config: TrainerConfig | None) -> str:
    """The sha256 of every field of ``data`` (a field added later is keyed too) and the
    ``TrainerConfig``: two inputs that could fit differently never share a key."""
    digest = hashlib.sha256()
    for item in dataclasses.fields(data):
        value = getattr(data, item.name)
        digest.update(item.name.encode() + b"\0")
        if isinstance(value, np.ndarray):
            digest.update(repr((value.dtype.str, value.shape)).encode())
            digest.update(value.tobytes())
        elif item.name == "prompts":  # long: streamed rather than one repr
            for prompt in value:
                digest.update(prompt.encode() + b"\0")
        else:
            digest.update(repr(value).encode())
        digest.update(b"\1")
    digest.update(repr(config or TrainerConfig()).encode())
    return digest.hexdigest()


def shared_fit(real: Any) -> Any:
    """``router_fit_sampled`` with the session's fits shared (``real`` is the function)."""

    def fit(data: TrainingData, config: TrainerConfig | None = None, progress: Any = None) -> Any:
        key = fit_key(data, config)
        kept = _fits.get(key)
        if kept is not None:
            if progress is not None:
                progress(STAGE_FITTING, 0.9)  # the checkpoint a cancel stops the run at
            stats["shared"] += 1
            return pickle.loads(kept)
        result: FitResult = real(data, config, progress)
        stats["fitted"] += 1
        if len(_fits) < MAX_FITS:
            # A model handle that does not pickle: such runs fit every time.
            with contextlib.suppress(pickle.PicklingError, TypeError, AttributeError):
                _fits[key] = pickle.dumps(result)
        return result

    return fit
