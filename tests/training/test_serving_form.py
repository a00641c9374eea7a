"""A version's serving form (``serving.npz``, training/learner/serving_form.py): written at
training, loaded without building anything, refused when malformed, and absent from older
versions, which still load. Decisions to the last bit: ``test_decision_reference.py``."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from tests.training.conftest import synthetic_frame
from training.learner import artifacts, serving_form
from training.learner.router import TrainedRouter
from training.learner.trainer import TrainerConfig, TrainingData, router_fit

MODELS = ["math-model", "prose-model"]
PROMPTS = ["Compute 17 + 42 * 3.", "Write a short poem about the lantern at dawn.", "", "x"]


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    frame = synthetic_frame(150, 0)
    data = TrainingData(
        prompts=frame["prompt"].tolist(),
        models=MODELS,
        scores=frame[[f"{m}/score" for m in MODELS]].to_numpy(float),
        costs=frame[[f"{m}/cost" for m in MODELS]].to_numpy(float),
        binary=[True, True],
    )
    return artifacts.router_to_files(router_fit(data, TrainerConfig(folds=3, threads=1)).router)


def _load(files: dict[str, bytes], pause: Callable[[], None] | None = None) -> TrainedRouter:
    digests = artifacts.files_digests(files)
    checksum = artifacts.manifest_checksum(digests)
    return artifacts.router_from_files(files, digests, checksum, pause=pause)


def _decisions(router: TrainedRouter) -> list[list[float]]:
    return [router.predict_one(p).tolist() for p in PROMPTS]


def test_a_version_is_stored_with_its_serving_form_and_an_older_one_loads_without(
    files: dict[str, bytes],
) -> None:
    older = {k: v for k, v in files.items() if k != artifacts.SERVING_FILE}

    served, plain = _load(files), _load(older)

    assert artifacts.SERVING_FILE in files
    assert _decisions(served) == _decisions(plain)  # exactly, not approximately
    converted = dict(older, **{artifacts.SERVING_FILE: artifacts.serving_file_of(plain, older)})
    assert converted[artifacts.SERVING_FILE] == files[artifacts.SERVING_FILE]


def test_loading_the_serving_form_parses_no_model_dump_and_builds_nothing(
    files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What made a load hold the GIL for 10-35 ms at a time does not run: no booster's JSON
    dump, no large ``json.loads``, no forest flattening, no vocabulary-wide table built. The
    load pauses between its steps (at least once per vocabulary chunk)."""
    parsed: list[int] = []
    real_loads = json.loads

    def loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(text))
        return real_loads(text, *args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("built at load")

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(lgb.Booster, "dump_model", refuse)
    for name in ("forest_from_boosters",):
        monkeypatch.setattr(f"training.learner.router.{name}", refuse)
    for name in ("char_ngram_index", "bigram_table"):
        monkeypatch.setattr(f"training.learner.featurizer.{name}", refuse)
    pauses: list[None] = []

    router = _load(files, pause=lambda: pauses.append(None))
    router.predict_one(PROMPTS[0])  # the first decision builds nothing either

    assert max(parsed) < 16_384  # router.json and the serving form's metadata only
    featurizer = router.featurizer
    chunks = math.ceil(len(featurizer.word_vocab) / serving_form.VOCAB_CHUNK) + math.ceil(
        len(featurizer.char_vocab) / serving_form.VOCAB_CHUNK
    )
    assert len(pauses) >= chunks + len(files)


def _with_array(files: dict[str, bytes], name: str, value: Any) -> dict[str, bytes]:
    """``files`` with one array of the serving form replaced (None: removed)."""
    with np.load(io.BytesIO(files[artifacts.SERVING_FILE]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if value is None:
        del arrays[name]
    else:
        arrays[name] = value(arrays[name]) if callable(value) else value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return dict(files, **{artifacts.SERVING_FILE: buffer.getvalue()})


MALFORMED = {
    "wrong-dtype": ("forest_left", lambda a: a.astype(np.int32), "int32"),
    "wrong-shape": ("exits_feature", lambda a: a.ravel(), "dimensions"),
    "index-out-of-range": ("forest_right", lambda a: a + len(a), "out of range"),
    "wrong-size": ("forest_sigmoid", lambda a: a[:-1], "heads"),
    "exit-mask-outside-its-tree": ("exits_left_leaves", lambda a: a | np.uint64(1 << 62), "mask"),
    "missing": ("char_keys", None, "no array char_keys"),
    "pickled-object-array": ("forest_value", lambda a: a.astype(object), "cannot be read"),
    "vocabulary-not-utf8": ("word_terms", lambda a: np.where(a == 10, a, 0xFF), "UTF-8"),
    "vocabulary-short": ("char_terms", lambda a: a[: len(a) // 2], "vocabulary"),
    "projection-of-another-size": ("projection", lambda a: a[:-1], "projection"),
    "not-npz": (None, None, "cannot be read"),
    "metadata-not-json": ("meta", lambda a: np.frombuffer(b"{not json", np.uint8).copy(), "JSON"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_a_malformed_serving_form_is_refused_with_a_reason(
    files: dict[str, bytes], case: str
) -> None:
    name, change, reason = MALFORMED[case]
    if name is None:
        bad = dict(files, **{artifacts.SERVING_FILE: b"not an npz file"})
    else:
        bad = _with_array(files, name, change)

    with pytest.raises(artifacts.ArtifactError, match="serving form") as refused:
        _load(bad)

    assert reason in str(refused.value)


def test_a_damaged_compressed_serving_form_is_refused_with_a_reason(
    files: dict[str, bytes],
) -> None:
    """A deflated member cut or damaged (zlib's and zipfile's own errors) is an ArtifactError
    with a reason, like every other malformed form, not an exception nobody maps."""
    with np.load(io.BytesIO(files[artifacts.SERVING_FILE]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    content = bytearray(buffer.getvalue())
    middle = len(content) // 2  # inside the largest member (the projection)
    content[middle : middle + 64] = bytes(64)

    with pytest.raises(artifacts.ArtifactError, match="serving form"):
        _load(dict(files, **{artifacts.SERVING_FILE: bytes(content)}))
