"""Stored task segments read back (``segments_from_arrays``): every array of a version's
``segment_*`` set checked for dtype, shape, index range and finiteness before it serves, so a
malformed or tampered version is refused at load (``ArtifactError``), not at a prompt."""

from __future__ import annotations

import numpy as np

from training.learner.segments import (
    ARRAYS,
    MAX_GROUPS,
    SOFT_ARRAYS,
    SUB_GRID,
    TOP_ARRAYS,
    TOP_CLASSIFIER,
    PromptSegments,
)
from training.learner.task_classifier import LOG_TEMPERATURE_BOUNDS

_DTYPES = {"term_weights": np.float32, "owner": np.int64, "best": np.int64}  # else float64


def _array_loaded(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """``segment_<name>`` with its dtype's kind checked, cast to the served dtype, finite."""
    array = arrays.get(f"segment_{name}")
    if array is None:
        raise ValueError(f"segment_{name} is missing")
    integral = name in ("owner", "best")
    if array.dtype.kind != ("i" if integral else "f"):
        raise ValueError(f"segment_{name} has dtype {array.dtype}")
    # Checked after the cast: a finite float64 past float32's range becomes inf in it.
    with np.errstate(over="ignore"):
        array = np.asarray(array, dtype=_DTYPES.get(name, np.float64))
    if not integral and not np.isfinite(array).all():
        raise ValueError(f"segment_{name} is not finite")
    return array


def segments_from_arrays(
    arrays: dict[str, np.ndarray],
    vocabulary: int,
    dense_size: int,
    models: int,
    top: str,
    soft: bool = False,
) -> PromptSegments:
    """Stored segments whose top level is ``top`` (``TOP_ARRAYS``), refused (``ValueError``)
    unless every array has the dtype, shape and index range the version's featurizer and models
    allow; with ``soft`` (format 6) the soft incumbent's arrays (``SOFT_ARRAYS``) too, which only
    the classifier has. A version without them serves the argmax task's best, as it always did."""
    if top not in TOP_ARRAYS or (soft and top != TOP_CLASSIFIER):
        raise ValueError(f"an unknown top level {top!r}, or {top!r} with a soft incumbent")
    names = (*ARRAYS, *TOP_ARRAYS[top], *(SOFT_ARRAYS if soft else ()))
    loaded = {name: _array_loaded(arrays, name) for name in names}
    top_array = loaded["bias" if top == TOP_CLASSIFIER else "top_centroids"]
    groups, count = top_array.shape[0] if top_array.ndim >= 1 else 0, loaded["best"].size
    if groups > MAX_GROUPS or count > MAX_GROUPS * SUB_GRID[-1]:
        raise ValueError(f"{groups} groups and {count} sub-segments: more than training makes")
    shapes = {
        "mean": (dense_size,),
        "scale": (dense_size,),
        "term_weights": (vocabulary, groups),
        "bias": (groups,),
        "top_centroids": (groups, dense_size),
        "centroids": (count, dense_size),
        "owner": (count,),
        "best": (count,),
        "means": (count, models),
        "temperature": (1,),
    }
    for name in loaded:
        if loaded[name].shape != shapes[name]:
            raise ValueError(f"segment_{name} is {loaded[name].shape}, expected {shapes[name]}")
    owner, best = loaded["owner"], loaded["best"]
    if not groups or (loaded["scale"] <= 0).any() or (best < 0).any() or (best >= models).any():
        raise ValueError("segments without groups, with a zero scale or an unknown model")
    if (owner < 0).any() or (owner >= groups).any() or len(np.unique(owner)) != groups:
        raise ValueError("a sub-segment of no group, or a group without sub-segments")
    if np.bincount(owner).max() > SUB_GRID[-1]:
        raise ValueError(f"a group with more than {SUB_GRID[-1]} sub-segments")
    if soft and (
        not _temperature_trained(loaded["temperature"])
        or (np.argmax(loaded["means"], 1) != best).any()
    ):
        raise ValueError("a temperature training never fits, or means whose best is not best")
    return PromptSegments.build(**loaded)


def _temperature_trained(temperature: np.ndarray) -> bool:
    """Inside the bounds ``temperature_fit`` searches (a tiny one divides logits to infinities)."""
    low, high = np.exp(LOG_TEMPERATURE_BOUNDS)
    return bool(((temperature >= low * (1 - 1e-9)) & (temperature <= high * (1 + 1e-9))).all())
