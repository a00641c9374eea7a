"""Router artifacts: LightGBM text models, featurizer JSON and NPZ arrays, with sha256 checksums.

No pickle anywhere: JSON, ``np.savez`` of numeric arrays (loaded with ``allow_pickle=False``)
and LightGBM's own text format. The checksum is the sha256 of a canonical manifest of every
file's sha256, so one string pins the whole version.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import lightgbm as lgb
import numpy as np

from training.learner.clusters import PromptClusters, clusters_from_arrays
from training.learner.embedding import EmbeddingUnavailableError
from training.learner.featurizer import Featurizer
from training.learner.forest import forest_from_boosters
from training.learner.router import KIND_CONSTANT, ScoreHead, TrainedRouter
from training.learner.segment_arrays import segments_from_arrays
from training.learner.segments import TOP_CLASSIFIER, PromptSegments
from training.learner.serving_form import (
    SERVING_FILE,
    ServingForm,
    ServingFormError,
    forest_check,
    serving_file,
    serving_form_steps,
)
from training.learner.task_hint import TaskHint, task_hint_from_meta

# 7: a task-hint blend (``task_hint``, ``task_hint_means``; task_hint.py), written only then, so
# a release that would ignore a request's task refuses the version; its segments say whether they
# are soft in ``segment_soft``. 6: task segments with the soft incumbent (``segment_means`` and ``segment_temperature``),
# written only then, so a release that would ignore them and serve the argmax task's best
# refuses the version; 5: task segments or clusters with sub-clusters (segments.py;
# ``segment_top`` says which top level, absent for tasks, so a release that knows only task
# segments refuses the other for its missing classifier), written only then so a release without
# them refuses the version; 4: the featurizer appends a sentence embedding (written only then, so
# a release that cannot compute it refuses the version instead of serving it with missing
# features); 3: prompt clusters
# and a cluster-best bonus per tradeoff; 2: a policy table (λ and offsets per tradeoff); 1: one
# incumbent bonus. Older formats keep serving as they were trained.
FORMAT_VERSION = 3
FORMAT_EMBEDDING = 4
FORMAT_SEGMENTS = 5
FORMAT_SOFT_SEGMENTS = 6
FORMAT_TASK_HINT = 7
KNOWN_FORMATS = frozenset(
    {
        1,
        2,
        FORMAT_VERSION,
        FORMAT_EMBEDDING,
        FORMAT_SEGMENTS,
        FORMAT_SOFT_SEGMENTS,
        FORMAT_TASK_HINT,
    }
)
ROUTER_FILE = "router.json"
FEATURIZER_FILE = "featurizer.json"
ARRAYS_FILE = "arrays.npz"
# Between two load steps the loader sleeps this long, so a thread waiting for the GIL (the
# worker's requests) takes it at every step instead of after the interpreter's switch interval.
LOAD_PAUSE_S = 0.0002
PROJECTION_ROWS = 8192  # vocabulary rows of the projection filled per load step


class ArtifactError(Exception):
    """Artifacts are missing, corrupt or do not match their checksum."""


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def manifest_checksum(digests: dict[str, str]) -> str:
    return sha256(json.dumps(digests, sort_keys=True, separators=(",", ":")).encode())


def router_to_files(router: TrainedRouter) -> dict[str, bytes]:
    """Serialise a trained router into named files."""
    files: dict[str, bytes] = {}
    heads: list[dict[str, Any]] = []
    for j, head in enumerate(router.heads):
        booster_file = None
        if head.booster is not None:
            booster_file = f"booster-{j}.txt"
            files[booster_file] = head.booster.model_to_string().encode()
        heads.append(
            {
                "model": router.models[j],
                "kind": head.kind,
                "prior": head.prior,
                "blend": head.blend,
                "shrink": head.shrink,
                "intercept": head.intercept,
                "booster": booster_file,
            }
        )
    meta = {
        "format_version": FORMAT_VERSION if router.featurizer.encoder is None else FORMAT_EMBEDDING,
        "models": router.models,
        "heads": heads,
        "mean_costs": [float(c) for c in router.mean_costs],
        "tradeoffs": [float(t) for t in router.tradeoffs],
        "lambdas": [float(v) for v in router.lambdas],
        "offsets": [[float(v) for v in row] for row in router.offsets],
        "mixes": [[None if np.isnan(v) else float(v) for v in row] for row in router.mixes],
    }
    arrays = router.featurizer.to_arrays()
    arrays["linear_coef"] = np.vstack([h.coef for h in router.heads]).astype(np.float32)
    if router.clusters is not None and router.cluster_bonus is not None:
        meta["cluster_best"] = [int(b) for b in router.clusters.best]
        meta["cluster_bonus"] = [float(b) for b in router.cluster_bonus]
        arrays["cluster_mean"] = router.clusters.mean
        arrays["cluster_scale"] = router.clusters.scale
        arrays["cluster_centroids"] = router.clusters.centroids
    if router.segments is not None and router.cluster_bonus is not None:
        meta["format_version"] = FORMAT_SOFT_SEGMENTS if router.segments.soft else FORMAT_SEGMENTS
        meta["segments"] = True
        if router.segments.top != TOP_CLASSIFIER:  # absent: task segments, as first written
            meta["segment_top"] = router.segments.top
        meta["cluster_bonus"] = [float(b) for b in router.cluster_bonus]
        arrays |= router.segments.to_arrays()
    _task_hint_store(router, meta, arrays)
    files[ROUTER_FILE] = json.dumps(meta, indent=1).encode()
    files[FEATURIZER_FILE] = json.dumps(router.featurizer.to_json()).encode()
    buffer = io.BytesIO()
    # Why the ignore below: numpy's savez stubs type **kwds as ArrayLike only; the arrays here are
    # ndarrays.
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    files[ARRAYS_FILE] = buffer.getvalue()
    serving = serving_file_of(router, files)
    if serving is not None:
        files[SERVING_FILE] = serving
    return files


def _task_hint_store(
    router: TrainedRouter, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> None:
    """Format 7: the task hint's fields and means, and whether the segments are soft."""
    if router.task_hint is None:
        return
    if router.segments is not None:
        meta["segment_soft"] = bool(router.segments.soft)
    meta["format_version"] = FORMAT_TASK_HINT
    meta["task_hint"] = router.task_hint.to_meta()
    arrays["task_hint_means"] = router.task_hint.means


def serving_file_of(router: TrainedRouter, files: dict[str, bytes]) -> bytes | None:
    """The serving form (``serving_form.py``) of the router as its files load: the forest of
    the boosters read back from their text, as a loaded version builds it on first use."""
    with_trees = [
        i for i, h in enumerate(router.heads) if h.booster is not None and h.kind != KIND_CONSTANT
    ]
    boosters = [lgb.Booster(model_str=files[f"booster-{j}.txt"].decode()) for j in with_trees]
    featurizer = router.featurizer
    with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as npz:
        projection = np.hstack([npz["components"].T, npz["linear_coef"].T])
    return serving_file(
        json.loads(files[FEATURIZER_FILE]),
        (featurizer.word_vocab, featurizer.char_vocab),
        featurizer.config.char_ngrams,
        forest_from_boosters(boosters) if boosters else None,
        np.ascontiguousarray(projection, dtype=np.float32),
    )


def files_digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: sha256(content) for name, content in sorted(files.items())}


def router_from_files(
    files: dict[str, bytes],
    digests: dict[str, str],
    checksum: str,
    pause: Callable[[], None] | None = None,
) -> TrainedRouter:
    """Rebuild a router after verifying every file against its digest and the manifest checksum.

    The load is a series of short steps (``router_load_steps``) with ``pause`` between them
    (default: a ``LOAD_PAUSE_S`` sleep, which lets a waiting thread take the GIL)."""
    steps = router_load_steps(files, digests, checksum)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            router: TrainedRouter = done.value
            return router
        (pause or _pause)()


def _pause() -> None:
    time.sleep(LOAD_PAUSE_S)


def router_load_steps(
    files: dict[str, bytes], digests: dict[str, str], checksum: str
) -> Generator[None, None, TrainedRouter]:
    """``router_from_files`` one step per ``yield``. A version with a serving form
    (``serving.npz``) comes out ready to decide; an older one builds it on its first ranking."""
    if manifest_checksum(digests) != checksum:
        raise ArtifactError("the artifact manifest does not match the version checksum")
    for name, digest in digests.items():
        if name not in files:
            raise ArtifactError(f"artifact file {name} is missing")
        if sha256(files[name]) != digest:
            raise ArtifactError(f"artifact file {name} does not match its sha256")
        yield
    meta = json.loads(files[ROUTER_FILE])
    if meta.get("format_version") not in KNOWN_FORMATS:
        raise ArtifactError(f"unsupported artifact format {meta.get('format_version')!r}")
    arrays = {}
    with np.load(io.BytesIO(files[ARRAYS_FILE]), allow_pickle=False) as npz:
        for key in npz.files:
            arrays[key] = npz[key]
            yield
    form = None
    if SERVING_FILE in digests:
        form = yield from _serving_form(files[SERVING_FILE], meta, arrays)
    featurizer = _featurizer(files, arrays, form)
    heads = []
    for j, spec in enumerate(meta["heads"]):
        booster = None
        if spec["booster"] and spec["kind"] != KIND_CONSTANT:
            booster = lgb.Booster(model_str=files[spec["booster"]].decode())
            yield
        heads.append(
            ScoreHead(
                kind=spec["kind"],
                prior=float(spec["prior"]),
                blend=float(spec["blend"]),
                shrink=float(spec["shrink"]),
                coef=np.asarray(arrays["linear_coef"][j], dtype=np.float64),
                intercept=float(spec["intercept"]),
                booster=booster,
            )
        )
    router = TrainedRouter(
        models=list(meta["models"]),
        featurizer=featurizer,
        heads=heads,
        mean_costs=np.asarray(meta["mean_costs"], dtype=np.float64),
        tradeoffs=np.asarray(meta["tradeoffs"], dtype=np.float64),
        lambdas=np.asarray(meta["lambdas"], dtype=np.float64),
        offsets=_offsets(meta),
        mixes=_mixes(meta),
        clusters=_clusters(meta, arrays, featurizer),
        cluster_bonus=_cluster_bonus(meta),
        segments=_segments(meta, arrays, featurizer),
        task_hint=_task_hint(meta, arrays),
    )
    if form is not None:
        projection = yield from _projection_steps(form.projection)
        router.serving_form_use(form.forest, projection)
    return router


def _serving_form(
    content: bytes, meta: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Generator[None, None, ServingForm]:
    tree_heads = sum(1 for h in meta["heads"] if h["booster"] and h["kind"] != KIND_CONSTANT)
    try:
        form = yield from serving_form_steps(
            content, len(arrays["word_idf"]), len(arrays["char_idf"]), tree_heads
        )
    except (ServingFormError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"the version's serving form is malformed: {exc!r}") from exc
    width = arrays["components"].shape[0] + len(meta["heads"])
    if form.projection.shape[1:] != (width,):
        raise ArtifactError("the version's projection does not fit its featurizer and heads")
    return form


def _featurizer(
    files: dict[str, bytes], arrays: dict[str, np.ndarray], form: ServingForm | None
) -> Featurizer:
    """From the serving form's vocabularies and tables when there is one, else from the JSON."""
    parts = json.loads(files[FEATURIZER_FILE]) if form is None else form.featurizer_meta
    try:
        if form is None:
            return Featurizer.from_parts(parts, arrays)
        empty = Featurizer.from_parts({**parts, "word_vocab": [], "char_vocab": []}, arrays)
    except EmbeddingUnavailableError as exc:
        raise ArtifactError(f"the version's embedding cannot be loaded: {exc}") from exc
    featurizer = replace(empty, word_vocab=form.word_vocab, char_vocab=form.char_vocab)
    featurizer.tables_use(form.bigrams, form.char_index)
    try:
        forest_check(form.forest, featurizer.dense_size)
    except ServingFormError as exc:
        raise ArtifactError(f"the version's serving form is malformed: {exc}") from exc
    return featurizer


def _projection_steps(stored: np.ndarray) -> Generator[None, None, np.ndarray]:
    """``TrainedRouter._projection_by_term``'s float64 array from the stored float32 one (the
    same values: the components and weights are float32 in the artifact), a block per step."""
    projection = np.empty(stored.shape, dtype=np.float64)
    for start in range(0, len(stored), PROJECTION_ROWS):
        projection[start : start + PROJECTION_ROWS] = stored[start : start + PROJECTION_ROWS]
        yield
    return projection


def _clusters(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], featurizer: Featurizer
) -> PromptClusters | None:
    if "cluster_best" not in meta:
        return None
    try:
        return clusters_from_arrays(
            meta["cluster_best"], arrays, featurizer.dense_size, len(meta["models"])
        )
    except ValueError as exc:  # numpy's own for a ragged list, or the checks'
        raise ArtifactError(f"the version's clusters are malformed: {exc}") from exc


def _cluster_bonus(meta: dict[str, Any]) -> np.ndarray | None:
    if "cluster_bonus" not in meta:
        return None
    bonus = np.asarray(meta["cluster_bonus"], dtype=np.float64)
    if bonus.shape != (len(meta["tradeoffs"]),):
        raise ArtifactError("the version's cluster bonuses do not fit its tradeoffs")
    return bonus


def _segments(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], featurizer: Featurizer
) -> PromptSegments | None:
    if not meta.get("segments"):
        return None
    if "cluster_bonus" not in meta:
        raise ArtifactError("the version's task segments have no bonuses")
    try:
        return segments_from_arrays(
            arrays,
            featurizer.vocabulary_size,
            featurizer.dense_size,
            len(meta["models"]),
            str(meta.get("segment_top", TOP_CLASSIFIER)),
            soft=meta.get("format_version") == FORMAT_SOFT_SEGMENTS
            or (
                meta.get("format_version") == FORMAT_TASK_HINT and meta.get("segment_soft") is True
            ),
        )
    except ValueError as exc:
        raise ArtifactError(f"the version's task segments are malformed: {exc}") from exc


def _task_hint(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TaskHint | None:
    if "task_hint" not in meta:
        return None
    if meta.get("format_version") != FORMAT_TASK_HINT:
        raise ArtifactError("the version's task hint needs artifact format 7")
    try:
        return task_hint_from_meta(
            meta["task_hint"], arrays.get("task_hint_means"), len(meta["models"])
        )
    except ValueError as exc:
        raise ArtifactError(f"the version's task hint is malformed: {exc}") from exc


def _mixes(meta: dict[str, Any]) -> np.ndarray:
    rows = meta.get("mixes") or [[0.0, 0.0, None]] * len(meta["tradeoffs"])
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows])


def _offsets(meta: dict[str, Any]) -> np.ndarray:
    """Format 2 stores the offsets; a format-1 version (one incumbent bonus at every tradeoff)
    keeps serving exactly as it was trained."""
    if "offsets" in meta:
        return np.asarray(meta["offsets"], dtype=np.float64)
    row = np.zeros(len(meta["models"]))
    row[int(meta["incumbent"])] = float(meta["bonus"])
    return np.tile(row, (len(meta["tradeoffs"]), 1))
