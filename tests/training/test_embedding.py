"""The optional sentence-embedding featurizer (``ROUTER_EMBEDDINGS=wordllama``): it loads from the
package's own files with the network blocked, appends the embedding to the dense features, and a
saved version keeps exactly the features it was trained with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_platform import _boot
from tests.training.test_learner import MODELS, _data
from training.learner import artifacts
from training.learner.embedding import (
    EMBEDDINGS_WORDLLAMA,
    EmbeddingUnavailableError,
    encoder_load,
)
from training.learner.featurizer import Featurizer, FeaturizerConfig, featurizer_fit
from training.learner.trainer import TrainerConfig, router_fit

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "Write a Python function that returns the n-th Fibonacci number.",
    "def add(a, b):\n    return a + b\n# write tests for this function",
    "Which gas do plants absorb from the air during photosynthesis?",
    "Quelle est la capitale de l'Australie ?",
    "计算 12 加 7 乘以 3。",
    "",
]
WITH_EMBEDDINGS = TrainerConfig(
    folds=3, threads=1, featurizer=FeaturizerConfig(embeddings=EMBEDDINGS_WORDLLAMA)
)

# Runs in a fresh interpreter: every way Python opens a connection raises, HTTP(S) proxies point
# at a closed port (so a client outside Python's socket module fails too), and HOME is empty (no
# ~/.cache/wordllama to fall back on). Prints the vector's size and norm, and whether the
# wordllama package itself was imported.
OFFLINE_LOAD = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from training.learner.embedding import encoder_load
vector = encoder_load("wordllama").encode("Write a Python function that reverses a list.")
print(len(vector), round(float(vector @ vector), 6), "wordllama" in sys.modules)
"""


def test_the_encoder_loads_from_the_packaged_files_with_the_network_blocked(
    tmp_path: Path,
) -> None:
    closed = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "ALL_PROXY": closed,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["256", "1.0", "False"]
    assert not (tmp_path / ".cache").exists()  # nothing was downloaded to a cache either


def test_the_embedding_is_wordllamas_own_normalised_mean_pooling() -> None:
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    encoder = encoder_load(EMBEDDINGS_WORDLLAMA)
    tokenizer = Tokenizer.from_str(encoder.tokenizer.to_str())  # wordllama pads its own copy
    reference = WordLlamaInference(encoder.table, tokenizer).embed(PROMPTS[:-1], norm=True)

    ours = encoder.encode_many(PROMPTS)

    np.testing.assert_allclose(ours[:-1], reference, atol=1e-5)
    assert not ours[-1].any()  # a prompt without tokens embeds as zeros
    code, other_code, science = ours[0], ours[1], ours[2]
    assert code @ other_code > code @ science  # the embedding carries the prompt's kind


def test_the_dense_features_end_with_the_embedding_at_fit_and_at_serving_time() -> None:
    plain, _, plain_dense = featurizer_fit(PROMPTS * 4)
    embedded, _, dense = featurizer_fit(
        PROMPTS * 4, FeaturizerConfig(embeddings=EMBEDDINGS_WORDLLAMA)
    )

    assert embedded.dense_size == plain.dense_size + 256 == dense.shape[1]
    np.testing.assert_array_equal(dense[:, : plain.dense_size], plain_dense)
    np.testing.assert_allclose(dense[:, plain.dense_size :], np.tile(_encoded(), (4, 1)))
    for row, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(embedded.transform(prompt)[2], dense[row], atol=1e-12)


def _encoded() -> np.ndarray:
    return encoder_load(EMBEDDINGS_WORDLLAMA).encode_many(PROMPTS)


def test_a_saved_featurizer_records_its_embedding_and_reloads_with_it() -> None:
    fitted, _, dense = featurizer_fit(PROMPTS * 4, FeaturizerConfig(embeddings="wordllama"))
    meta = json.loads(json.dumps(fitted.to_json()))

    restored = Featurizer.from_parts(meta, fitted.to_arrays())

    assert meta["embedding"]["name"] == "wordllama" and meta["embedding"]["dim"] == 256
    assert len(meta["embedding"]["weights_sha256"]) == 64
    assert restored.config.embeddings == "wordllama"
    np.testing.assert_allclose(
        restored.dense_many(PROMPTS, restored.tfidf_matrix(PROMPTS)), dense[:6], atol=1e-12
    )


def test_a_featurizer_saved_without_an_embedding_serves_without_one() -> None:
    fitted, _, dense = featurizer_fit(PROMPTS * 4)
    meta = fitted.to_json()

    restored = Featurizer.from_parts(meta, fitted.to_arrays())

    assert "embedding" not in meta and restored.encoder is None
    assert restored.dense_size == dense.shape[1]
    np.testing.assert_allclose(restored.transform(PROMPTS[0])[2], dense[0], atol=1e-12)


@pytest.mark.parametrize("serving_form", [True, False], ids=["serving-form", "older-format"])
def test_a_version_trained_with_other_weights_is_refused_with_a_reason(serving_form: bool) -> None:
    fitted = router_fit(_data(90), WITH_EMBEDDINGS)
    files = artifacts.router_to_files(fitted.router)
    meta = json.loads(files[artifacts.FEATURIZER_FILE])
    meta["embedding"]["weights_sha256"] = "0" * 64
    files[artifacts.FEATURIZER_FILE] = json.dumps(meta).encode()
    # The serving form carries the featurizer's settings too (written from the same JSON).
    serving = artifacts.serving_file_of(fitted.router, files) if serving_form else None
    files.pop(artifacts.SERVING_FILE)
    if serving is not None:
        files[artifacts.SERVING_FILE] = serving
    digests = artifacts.files_digests(files)

    with pytest.raises(artifacts.ArtifactError, match="install the wordllama version pinned"):
        artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))
    with pytest.raises(EmbeddingUnavailableError, match="unknown embedding"):
        encoder_load("glove")


def test_a_router_with_embeddings_round_trips_and_decides_one_prompt_as_the_batch() -> None:
    fitted = router_fit(_data(), WITH_EMBEDDINGS)
    files = artifacts.router_to_files(fitted.router)
    digests = artifacts.files_digests(files)

    restored = artifacts.router_from_files(files, digests, artifacts.manifest_checksum(digests))

    assert json.loads(files[artifacts.ROUTER_FILE])["format_version"] == 4
    prompts = ["Solve for x: 4x = 20.", "Describe the meadow in a gentle tone.", ""]
    batch = fitted.router.predict_many(prompts)
    np.testing.assert_allclose(restored.predict_many(prompts), batch)
    for row, prompt in enumerate(prompts):
        np.testing.assert_allclose(restored.predict_one(prompt), batch[row], rtol=1e-9)
    math, prose = restored.predict_one(prompts[0]), restored.predict_one(prompts[1])
    assert math[MODELS.index("math-model")] > prose[MODELS.index("math-model")]


def test_a_router_without_embeddings_keeps_the_previous_artifact_format() -> None:
    files = artifacts.router_to_files(
        router_fit(_data(90), TrainerConfig(folds=3, threads=1)).router
    )

    assert json.loads(files[artifacts.ROUTER_FILE])["format_version"] == 3
    assert "embedding" not in json.loads(files[artifacts.FEATURIZER_FILE])


def test_an_unknown_embeddings_setting_fails_at_boot(tmp_path: Path) -> None:
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "ROUTER_EMBEDDINGS": "bert"})

    assert result.returncode != 0
    assert "ROUTER_EMBEDDINGS must be off or wordllama" in result.stderr
