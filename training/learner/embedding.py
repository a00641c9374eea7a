"""Optional sentence-embedding features (``ROUTER_EMBEDDINGS``): WordLlama's packaged static
token embeddings, mean-pooled per prompt.

The ``wordllama`` wheel ships its weights: ``weights/l2_supercat_256.safetensors`` (a 32,000 x
256 token-embedding table, float16) and ``tokenizers/l2_supercat_tokenizer_config.json``
(Llama 2's tokenizer). Its own ``WordLlama.load`` looks for the tokenizer under ``tokenizer/``
(singular) and then downloads it, so the two files are read here directly with ``safetensors``
and ``tokenizers`` (wordllama's own dependencies) and the package is never imported (its import
also reconfigures the root logger): nothing here opens a socket. A prompt's embedding is the
mean of its tokens' rows, L2-normalised: what ``WordLlamaInference.embed(text, norm=True)``
computes. A fitted featurizer records the encoder (name, table, dimension, the weights' sha256)
and a saved version refuses to load when the installed files differ, so its features never
change under it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDINGS_OFF = "off"
EMBEDDINGS_WORDLLAMA = "wordllama"
EMBEDDING_CHOICES = (EMBEDDINGS_OFF, EMBEDDINGS_WORDLLAMA)
WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIM = 256
WEIGHTS_KEY = "embedding.weight"


class EmbeddingUnavailableError(Exception):
    """The embedding's package or files are missing, or differ from the ones a version used."""


@dataclass(frozen=True)
class EmbeddingSpec:
    """Which encoder a featurizer was fitted with; saved in its JSON."""

    name: str
    table: str
    dim: int
    weights_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "table": self.table,
            "dim": self.dim,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> EmbeddingSpec:
        return cls(str(raw["name"]), str(raw["table"]), int(raw["dim"]), str(raw["weights_sha256"]))


@dataclass(frozen=True)
class PromptEncoder:
    """Token ids by the packaged tokenizer, then the mean of their embedding rows."""

    spec: EmbeddingSpec
    tokenizer: Any  # tokenizers.Tokenizer (its stubs are partial)
    table: np.ndarray  # (vocabulary, dim) float32

    @property
    def dim(self) -> int:
        return self.spec.dim

    def encode(self, text: str) -> np.ndarray:
        """(dim,) float64: the L2-normalised mean of the prompt's token embeddings (zeros when
        the prompt has no tokens)."""
        ids = np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, np.int64)
        if not len(ids):
            return np.zeros(self.dim)
        np.clip(ids, 0, len(self.table) - 1, out=ids)  # as wordllama does
        pooled: np.ndarray = self.table[ids].mean(axis=0, dtype=np.float64)
        norm = float(np.sqrt(pooled @ pooled))
        return pooled / norm if norm > 0 else pooled

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim): ``encode`` of each text (the same per-text code, so training and serving
        see identical features)."""
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            out[row] = self.encode(text)
        return out


def _package_dir(package: str) -> Path:
    """Where ``package`` is installed, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailableError(
            f"the {package} package is not installed: install RouterHub's embeddings extra "
            "(pip install -e '.[embeddings]') or set ROUTER_EMBEDDINGS=off"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _wordllama_files() -> tuple[Path, Path]:
    root = _package_dir("wordllama")
    weights = root / "weights" / f"{WORDLLAMA_CONFIG}_{WORDLLAMA_DIM}.safetensors"
    tokenizer = root / "tokenizers" / f"{WORDLLAMA_CONFIG}_tokenizer_config.json"
    for path in (weights, tokenizer):
        if not path.is_file():
            raise EmbeddingUnavailableError(f"wordllama's packaged file {path} is missing")
    return weights, tokenizer


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _wordllama_load() -> PromptEncoder:
    from safetensors import safe_open
    from tokenizers import Tokenizer

    weights, tokenizer_file = _wordllama_files()
    with safe_open(str(weights), framework="np", device="cpu") as tensors:
        table = np.ascontiguousarray(tensors.get_tensor(WEIGHTS_KEY), dtype=np.float32)
    if table.shape[1] != WORDLLAMA_DIM:
        raise EmbeddingUnavailableError(f"wordllama's table has shape {table.shape}")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    spec = EmbeddingSpec(
        EMBEDDINGS_WORDLLAMA, WORDLLAMA_CONFIG, WORDLLAMA_DIM, _file_sha256(weights)
    )
    return PromptEncoder(spec, tokenizer, table)


_LOADED: dict[str, PromptEncoder] = {}
_LOCK = threading.Lock()


def encoder_load(name: str) -> PromptEncoder:
    """The installed encoder ``name`` (``EMBEDDINGS_WORDLLAMA``), loaded once per process
    (~32 MB for the float32 table)."""
    if name != EMBEDDINGS_WORDLLAMA:
        raise EmbeddingUnavailableError(f"unknown embedding {name!r}; one of {EMBEDDING_CHOICES}")
    with _LOCK:
        if name not in _LOADED:
            _LOADED[name] = _wordllama_load()
        return _LOADED[name]


def encoder_for(spec: EmbeddingSpec) -> PromptEncoder:
    """The installed encoder a saved featurizer used; refuses different weights."""
    encoder = encoder_load(spec.name)
    if encoder.spec != spec:
        raise EmbeddingUnavailableError(
            f"this version was trained with {spec.name} weights {spec.weights_sha256[:12]}…, "
            f"but the installed ones are {encoder.spec.weights_sha256[:12]}…: install the "
            "wordllama version pinned in pyproject.toml"
        )
    return encoder


def encoders_forget() -> None:
    """Drop the loaded encoders (tests load them afresh)."""
    with _LOCK:
        _LOADED.clear()
