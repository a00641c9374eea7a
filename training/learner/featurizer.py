"""Prompt featurizer: text statistics plus TF-IDF word and char n-grams reduced by truncated SVD,
and optionally a sentence embedding (``embedding.py``, ``FeaturizerConfig.embeddings``).

Fitted on a tenant's prompts (without labels). Its parameters are plain JSON and numpy arrays
(never pickle), and the one ``transform`` below runs at training and at serving time, so the
models see exactly the features they were trained on. The TF-IDF maths reproduces
scikit-learn's ``TfidfVectorizer(lowercase=True, sublinear_tf=True, norm="l2",
smooth_idf=True)`` for ``analyzer="word"`` (1-2-grams) and ``analyzer="char_wb"`` (3-5-grams);
``tests/training/test_featurizer.py`` checks the equality. scikit-learn is used only to fit the SVD.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

import numpy as np
from scipy import sparse

from training.learner.char_ngrams import CharNgramIndex, char_ngram_index
from training.learner.embedding import (
    EMBEDDINGS_OFF,
    EmbeddingSpec,
    PromptEncoder,
    encoder_for,
    encoder_load,
)
from training.learner.prompt_text import (
    LEGACY_STAT_NAMES,
    STAT_NAMES,
    bigram_table,
    char_terms,
    text_statistics,
    word_terms,
    word_tokens,
)

CHAR_CACHE_WORDS = 200_000  # memoised words per featurizer (a few tens of MB at most)


@dataclass(frozen=True)
class FeaturizerConfig:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    word_max_features: int = 30_000
    char_max_features: int = 20_000
    min_df: int = 2
    svd_components: int = 32
    seed: int = 0
    # ``embedding.EMBEDDING_CHOICES``: the dense features end with the prompt's embedding
    embeddings: str = EMBEDDINGS_OFF


def _tfidf_block(
    row: np.ndarray, col: np.ndarray, count: np.ndarray, idf: np.ndarray, shape: tuple[int, int]
) -> sparse.csr_matrix:
    """Sublinear tf · idf, L2-normalised per row: scikit-learn's TfidfTransformer."""
    weight = _sublinear_weights(count, idf[col])
    norms = np.sqrt(np.bincount(row, weights=weight * weight, minlength=shape[0]))
    weight = weight / np.where(norms > 0, norms, 1.0)[row]
    matrix = sparse.csr_matrix((weight, (row, col)), shape=shape)
    matrix.sort_indices()
    return matrix


def _present_counts(ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``ids`` (of a vocabulary of ``width``), sorted, and how often each occurs.

    Sorting the ids beats counting over the whole vocabulary (bincount, then a nonzero scan of
    it) while there are fewer ids than vocabulary entries: for a 2 KB prompt ~40% fewer
    instructions. Both give the same arrays."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if len(ids) < width:
        present, counts = np.unique(ids, return_counts=True)
        return present.astype(np.int64), counts.astype(np.float64)
    all_counts = np.bincount(ids)
    present = np.flatnonzero(all_counts)
    return present, all_counts[present].astype(np.float64)


def _sublinear_weights(count: np.ndarray, idf: np.ndarray) -> np.ndarray:
    return np.asarray((1.0 + np.log(count)) * idf)


@dataclass
class Featurizer:
    """A fitted featurizer; ``transform`` maps a prompt to (sparse TF-IDF, dense features)."""

    config: FeaturizerConfig
    word_vocab: dict[str, int]
    word_idf: np.ndarray
    char_vocab: dict[str, int]
    char_idf: np.ndarray
    components: np.ndarray  # (svd_components, |word vocab| + |char vocab|), float32
    stat_names: tuple[str, ...] = STAT_NAMES  # the statistics this featurizer was fitted with
    encoder: PromptEncoder | None = None  # appends the prompt's embedding to the dense features
    _components_t: np.ndarray | None = field(default=None, init=False, repr=False)
    _char_cache: dict[str, bytes] = field(init=False, repr=False, default_factory=dict)
    _char_index: CharNgramIndex | None = field(default=None, init=False, repr=False)
    _char_index_built: bool = field(default=False, init=False, repr=False)
    _bigram_ids: dict[tuple[str, ...], int] | None = field(default=None, init=False, repr=False)

    def components_t(self) -> np.ndarray:
        """(vocabulary, components) float64, built on first use (not by a serving router)."""
        if self._components_t is None:
            self._components_t = np.ascontiguousarray(self.components.T, dtype=np.float64)
        return self._components_t

    @property
    def vocabulary_size(self) -> int:
        return len(self.word_vocab) + len(self.char_vocab)

    @property
    def dense_size(self) -> int:
        embedded = 0 if self.encoder is None else self.encoder.dim
        return int(self.components.shape[0]) + len(self.stat_names) + embedded

    def _word_counts(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary ids of the prompt's word n-grams, and their counts."""
        get = self.word_vocab.get
        # One dict lookup per term, then counting ids: cheaper than a Counter over the n-gram
        # strings (measured ~0.23 -> ~0.12 ms for a 2 KB prompt).
        if self.config.word_ngrams == (1, 2):
            # Bigrams looked up as token pairs: no string built and hashed per bigram (~30%
            # fewer instructions for the lookups of a 2 KB prompt).
            tokens = word_tokens(text)
            ids = [i for i in map(get, tokens) if i is not None]
            ids += [i for i in map(self._bigrams().get, pairwise(tokens)) if i is not None]
        else:
            ids = [i for i in map(get, word_terms(text, self.config.word_ngrams)) if i is not None]
        return _present_counts(np.asarray(ids, dtype=np.int64), len(self.word_vocab))

    def _bigrams(self) -> dict[tuple[str, ...], int]:
        if self._bigram_ids is None:  # the vocabulary's bigrams keyed by their two tokens
            self._bigram_ids = bigram_table(self.word_vocab)
        return self._bigram_ids

    def tables_use(self, bigrams: dict[tuple[str, ...], int], index: CharNgramIndex | None) -> None:
        """A stored serving form's tables (``serving_form.py``), used instead of building them."""
        self._bigram_ids, self._char_index, self._char_index_built = bigrams, index, True

    def _char_ids_of_word(self, word: str) -> bytes:
        """Vocabulary ids of one word's char_wb n-grams (repeats kept) as int32 bytes, memoised
        per process: prompts reuse words, and this turns thousands of slices per prompt into a
        lookup."""
        get = self.char_vocab.get
        ids = [i for i in map(get, char_terms(word, self.config.char_ngrams)) if i is not None]
        packed = np.asarray(ids, dtype=np.int32).tobytes()
        if len(self._char_cache) < CHAR_CACHE_WORDS:
            self._char_cache[word] = packed
        return packed

    def _char_ids_of_new_words(self, words: list[str]) -> dict[str, bytes]:
        """``_char_ids_of_word`` of each of ``words`` (memoised likewise), the words long enough
        for an n-gram all at once through the vocabulary's integer index (char_ngrams.py)."""
        if not self._char_index_built:
            self._char_index = char_ngram_index(self.char_vocab, self.config.char_ngrams)
            self._char_index_built = True
        index, shortest = self._char_index, self.config.char_ngrams[0] - 2
        unique = list(dict.fromkeys(words))
        if index is None:
            return {word: self._char_ids_of_word(word) for word in unique}
        out = {word: self._char_ids_of_word(word) for word in unique if len(word) < shortest}
        long = [word for word in unique if len(word) >= shortest]
        if not long:
            return out
        ids, owner = index.word_ids(long)
        ends = np.cumsum(np.bincount(owner, minlength=len(long)))
        for word, start, end in zip(long, np.concatenate([[0], ends[:-1]]), ends, strict=True):
            packed = out[word] = ids[start:end].tobytes()
            if len(self._char_cache) < CHAR_CACHE_WORDS:
                self._char_cache[word] = packed
        return out

    def _char_counts(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted vocabulary ids of the prompt's char_wb n-grams, and their counts.

        char_wb n-grams never cross whitespace, so a prompt's n-grams are its words' n-grams,
        memoised per word. The memo holds packed int32 bytes: joining a prompt's words' bytes
        and reading them as one array costs a fraction of concatenating an array per word
        (measured ~40% less for a 4 KB prompt)."""
        words = text.lower().split()
        parts = list(map(self._char_cache.get, words))
        if None in parts:
            new = self._char_ids_of_new_words(
                [w for w, p in zip(words, parts, strict=True) if p is None]
            )
            parts = [
                part if part is not None else new[word]
                for word, part in zip(words, parts, strict=True)
            ]
        # Why the ignore below: numpy's stubs want a Buffer; bytes is one at run time.
        ids = np.frombuffer(b"".join(parts), dtype=np.int32)  # type: ignore[arg-type]
        return _present_counts(ids, len(self.char_vocab))

    def tfidf_matrix(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows (word block then char block), each block L2-normalised."""
        n = len(texts)
        blocks = []
        for counter, idf, width in (
            (self._word_counts, self.word_idf, len(self.word_vocab)),
            (self._char_counts, self.char_idf, len(self.char_vocab)),
        ):
            rows, cols, counts = [], [], []
            for r, text in enumerate(texts):
                ids, count = counter(text)
                rows.append(np.full(len(ids), r, dtype=np.int64))
                cols.append(ids)
                counts.append(count)
            blocks.append(
                _tfidf_block(
                    np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64),
                    np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64),
                    np.concatenate(counts) if counts else np.zeros(0),
                    idf,
                    (n, width),
                )
            )
        return sparse.hstack(blocks, format="csr")

    def tfidf(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted column indices and weights of one prompt's TF-IDF row, without scipy.

        The same counting and weighting as ``tfidf_matrix``; the serving hot path skips the
        sparse-matrix construction (tests check both agree)."""
        parts_index, parts_value = [], []
        for counter, idf, offset in (
            (self._word_counts, self.word_idf, 0),
            (self._char_counts, self.char_idf, len(self.word_vocab)),
        ):
            ids, count = counter(text)
            weight = _sublinear_weights(count, idf[ids])
            norm = float(np.sqrt(np.dot(weight, weight)))
            parts_index.append(ids + offset)
            parts_value.append(weight / norm if norm > 0 else weight)
        return np.concatenate(parts_index), np.concatenate(parts_value)

    def transform(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt: TF-IDF column indices and weights, and the dense feature vector."""
        index, values = self.tfidf(text)
        projected = values @ np.take(self.components_t(), index, axis=0)
        return index, values, self.dense_of(projected, text)

    def dense_of(self, projected: np.ndarray, text: str) -> np.ndarray:
        """The dense feature vector from a prompt's SVD projection and its text."""
        parts = [projected, np.asarray(text_statistics(text, len(self.stat_names)))]
        if self.encoder is not None:
            parts.append(self.encoder.encode(text))
        return np.concatenate(parts)

    def transform_many(self, texts: Sequence[str]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Batch form of ``transform``: a CSR TF-IDF matrix and the dense feature matrix."""
        matrix = self.tfidf_matrix(texts)
        return matrix, self.dense_many(texts, matrix)

    def dense_many(self, texts: Sequence[str], matrix: sparse.csr_matrix) -> np.ndarray:
        projected = np.asarray(matrix @ self.components_t()).reshape(len(texts), -1)
        count = len(self.stat_names)
        stats = np.array([text_statistics(t, count) for t in texts], dtype=np.float64).reshape(
            len(texts), count
        )
        if self.encoder is None:
            return np.hstack([projected, stats])
        return np.hstack([projected, stats, self.encoder.encode_many(texts)])

    # --- persistence: JSON config and vocabularies, arrays for idf and components -------------
    def to_json(self) -> dict[str, Any]:
        meta = self._tfidf_json()
        if self.encoder is not None:  # absent: a featurizer without (or from before) embeddings
            meta["embedding"] = self.encoder.spec.to_json()
        return meta

    def _tfidf_json(self) -> dict[str, Any]:
        return {
            "kind": "tfidf-svd-stats",
            "config": {
                "word_ngrams": list(self.config.word_ngrams),
                "char_ngrams": list(self.config.char_ngrams),
                "word_max_features": self.config.word_max_features,
                "char_max_features": self.config.char_max_features,
                "min_df": self.config.min_df,
                "svd_components": int(self.components.shape[0]),
                "seed": self.config.seed,
            },
            "stat_names": list(self.stat_names),
            "word_vocab": sorted(self.word_vocab, key=self.word_vocab.__getitem__),
            "char_vocab": sorted(self.char_vocab, key=self.char_vocab.__getitem__),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "word_idf": self.word_idf.astype(np.float64),
            "char_idf": self.char_idf.astype(np.float64),
            "components": self.components.astype(np.float32),
        }

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Featurizer:
        raw = meta["config"]
        config = FeaturizerConfig(
            word_ngrams=(int(raw["word_ngrams"][0]), int(raw["word_ngrams"][1])),
            char_ngrams=(int(raw["char_ngrams"][0]), int(raw["char_ngrams"][1])),
            word_max_features=int(raw["word_max_features"]),
            char_max_features=int(raw["char_max_features"]),
            min_df=int(raw["min_df"]),
            svd_components=int(raw["svd_components"]),
            seed=int(raw["seed"]),
        )
        encoder = None
        if meta.get("embedding") is not None:
            encoder = encoder_for(EmbeddingSpec.from_json(meta["embedding"]))
            config = replace(config, embeddings=encoder.spec.name)
        return cls(
            config=config,
            word_vocab={term: i for i, term in enumerate(meta["word_vocab"])},
            word_idf=np.asarray(arrays["word_idf"], dtype=np.float64),
            char_vocab={term: i for i, term in enumerate(meta["char_vocab"])},
            char_idf=np.asarray(arrays["char_idf"], dtype=np.float64),
            components=np.asarray(arrays["components"], dtype=np.float32),
            stat_names=_known_stat_names(meta.get("stat_names", LEGACY_STAT_NAMES)),
            encoder=encoder,
        )


def _known_stat_names(names: Sequence[str]) -> tuple[str, ...]:
    """A saved featurizer's statistics: a prefix of ``STAT_NAMES`` (they are only appended)."""
    names = tuple(names)
    if names != STAT_NAMES[: len(names)]:
        raise ValueError(f"unknown text statistics {names!r}")
    return names


DocumentCounts = Callable[[str, dict[str, int]], tuple[np.ndarray, np.ndarray]]


def _provisional_word_counts(ngrams: tuple[int, int]) -> DocumentCounts:
    def count(text: str, table: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(word_terms(text, ngrams))
        ids = np.fromiter((table.setdefault(t, len(table)) for t in counts), np.int64, len(counts))
        return ids, np.fromiter(counts.values(), np.float64, len(counts))

    return count


def _provisional_char_counts(ngrams: tuple[int, int]) -> DocumentCounts:
    """Per-word memo, as in ``Featurizer._char_counts``: a corpus repeats its words a lot."""
    memo: dict[str, np.ndarray] = {}

    def word_ids(word: str, table: dict[str, int]) -> np.ndarray:
        ids = memo.get(word)
        if ids is None:
            terms = char_terms(word, ngrams)
            ids = np.fromiter(
                (table.setdefault(t, len(table)) for t in terms), np.int64, len(terms)
            )
            memo[word] = ids
        return ids

    def count(text: str, table: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        words = Counter(text.lower().split())
        if not words:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        per_word = [word_ids(w, table) for w in words]
        weights = np.repeat(
            np.fromiter(words.values(), np.float64, len(words)), list(map(len, per_word))
        )
        unique, inverse = np.unique(np.concatenate(per_word), return_inverse=True)
        return unique, np.bincount(inverse, weights=weights)

    return count


def _fit_block(
    texts: Sequence[str], counter: DocumentCounts, min_df: int, max_features: int
) -> tuple[dict[str, int], np.ndarray, sparse.csr_matrix]:
    """Vocabulary (alphabetical indices, like scikit-learn), smooth idf and the TF-IDF block.

    Each text is analysed once: terms get provisional ids, and the kept ones are remapped.
    """
    table: dict[str, int] = {}
    rows: list[np.ndarray] = []
    id_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []
    for r, text in enumerate(texts):
        ids, counts = counter(text, table)
        id_parts.append(ids)
        count_parts.append(counts)
        rows.append(np.full(len(ids), r, dtype=np.int64))
    id_array = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)
    count_array = np.concatenate(count_parts) if count_parts else np.zeros(0)
    df = np.bincount(id_array, minlength=len(table))
    tf = np.bincount(id_array, weights=count_array, minlength=len(table))
    terms = np.array(list(table), dtype=object)
    documents = len(texts)
    kept = np.nonzero(df >= (min_df if documents >= min_df else 1))[0]
    if len(kept) > max_features:
        # Most frequent first; ties at the cut broken alphabetically so fits are reproducible.
        cut = np.sort(tf[kept])[::-1][max_features - 1]
        above = kept[tf[kept] > cut]
        tied = sorted(kept[tf[kept] == cut], key=lambda i: terms[i])
        kept = np.concatenate(
            [above, np.asarray(tied[: max_features - len(above)], dtype=np.int64)]
        )
    order = sorted(kept.tolist(), key=lambda i: terms[i])
    remap = np.full(len(table), -1, dtype=np.int64)
    remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    vocabulary = {str(terms[i]): k for k, i in enumerate(order)}
    idf = np.log((1.0 + documents) / (1.0 + df[order].astype(np.float64))) + 1.0
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = remap[id_array]
    keep = col >= 0
    block = _tfidf_block(row[keep], col[keep], count_array[keep], idf, (documents, len(order)))
    return vocabulary, idf, block


def featurizer_fit(
    texts: Sequence[str], config: FeaturizerConfig | None = None
) -> tuple[Featurizer, sparse.csr_matrix, np.ndarray]:
    """Fit vocabularies, idf and the SVD on ``texts`` (no labels); also return their features."""
    from sklearn.decomposition import TruncatedSVD  # fit-time only; serving never imports it

    config = config or FeaturizerConfig()
    word_vocab, word_idf, word_block = _fit_block(
        texts, _provisional_word_counts(config.word_ngrams), config.min_df, config.word_max_features
    )
    char_vocab, char_idf, char_block = _fit_block(
        texts, _provisional_char_counts(config.char_ngrams), config.min_df, config.char_max_features
    )
    matrix = sparse.hstack([word_block, char_block], format="csr")
    width = matrix.shape[1]
    n_components = min(config.svd_components, width - 1, len(texts) - 1)
    components = np.zeros((0, width), dtype=np.float32)
    if n_components >= 1:
        svd = TruncatedSVD(n_components, algorithm="randomized", n_iter=4, random_state=config.seed)
        svd.fit(matrix)
        components = svd.components_.astype(np.float32)
    featurizer = Featurizer(
        config=config,
        word_vocab=word_vocab,
        word_idf=word_idf,
        char_vocab=char_vocab,
        char_idf=char_idf,
        components=components,
        encoder=None if config.embeddings == EMBEDDINGS_OFF else encoder_load(config.embeddings),
    )
    return featurizer, matrix, featurizer.dense_many(texts, matrix)
