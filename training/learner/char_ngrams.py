"""Vocabulary ids of many words' ``char_wb`` n-grams at once, with numpy instead of a string slice
and a dict lookup per n-gram.

Each character the char vocabulary uses gets a small code (1 … A); an n-gram is the integer
``Σ code(c_j) << (bits · j)``, exact and unique (codes are never 0, so the length is in the
key), and the vocabulary is a sorted array of those integers. A prompt's words become one array
of character codes; every window of 3 to 5 characters inside a space-padded word is a key, found
with one ``searchsorted``. A window with a character the vocabulary never uses cannot be a term
and is dropped. The n-grams are ``prompt_text.char_terms``' (tests compare the two on generated
text); a vocabulary whose alphabet needs more than 63 bits per key has no index and the
featurizer keeps its per-n-gram path.

Why: the featurizer memoises each word's ids, so a prompt of known words costs a lookup per word,
but a word seen for the first time cost ~5 µs of Python (a 2 KB prompt of new words ~1.5 ms, the
whole decision budget); here the words a prompt brings for the first time cost tens of µs together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _codes(text: str) -> np.ndarray:
    """Unicode code points of ``text`` (one uint32 each)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@dataclass(frozen=True)
class CharNgramIndex:
    """The char vocabulary as sorted integer keys (``char_ngram_index`` builds it)."""

    code_of: np.ndarray  # code point -> character code (0: not in the vocabulary's alphabet)
    bits: int  # bits per character in a key
    keys: np.ndarray  # sorted uint64 keys
    ids: np.ndarray  # int32 vocabulary id of each key
    ngrams: tuple[int, int]

    def _character_codes(self, text: str) -> np.ndarray:
        points = _codes(text)
        top = len(self.code_of) - 1
        return np.where(points <= top, self.code_of[np.minimum(points, top)], 0).astype(np.uint64)

    def word_ids(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, word) of every vocabulary n-gram of ``words``: each n-gram's vocabulary id and
        the index of the word it came from, grouped by word in order.

        Every word must be at least ``ngrams[0] - 2`` characters long (padded, at least one
        n-gram long); ``prompt_text.char_terms`` counts a shorter word once as a whole."""
        sizes = np.fromiter(map(len, words), dtype=np.int64, count=len(words)) + 2
        codes = self._character_codes(" " + "  ".join(words) + " ")
        word_of = np.repeat(np.arange(len(words)), sizes)
        low, high = self.ngrams
        found_ids, found_words = [], []
        for n in range(low, high + 1):
            span = len(codes) - n + 1
            if span <= 0:
                break
            key = codes[:span].copy()
            usable = key > 0
            for j in range(1, n):
                part = codes[j : j + span]
                usable &= part > 0
                key |= part << np.uint64(self.bits * j)
            usable &= word_of[:span] == word_of[n - 1 : n - 1 + span]  # inside one padded word
            key, owner = key[usable], word_of[:span][usable]
            at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
            known = self.keys[at] == key
            found_ids.append(self.ids[at[known]])
            found_words.append(owner[known])
        ids = np.concatenate(found_ids) if found_ids else np.zeros(0, dtype=np.int32)
        owners = np.concatenate(found_words) if found_words else np.zeros(0, dtype=np.int64)
        order = np.argsort(owners, kind="stable")
        return ids[order], owners[order]


def char_ngram_index(vocabulary: dict[str, int], ngrams: tuple[int, int]) -> CharNgramIndex | None:
    """The index of a char vocabulary, or None when its keys would not fit in 63 bits."""
    names = list(vocabulary)
    points = _codes("".join(names))
    alphabet = np.unique(points)
    bits = max(1, len(alphabet).bit_length())  # codes 1 … len(alphabet)
    if bits * ngrams[1] > 63:  # no term is longer than the largest n
        return None
    code_of = np.zeros(int(alphabet[-1]) + 1 if len(alphabet) else 1, dtype=np.uint32)
    code_of[alphabet] = np.arange(1, len(alphabet) + 1)
    if not names:
        empty = np.zeros(0, dtype=np.uint64)
        return CharNgramIndex(code_of, bits, empty, np.zeros(0, dtype=np.int32), ngrams)
    lengths = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    codes = code_of[points].astype(np.uint64)
    position = np.arange(len(codes)) - np.repeat(starts, lengths)
    keys = np.bitwise_or.reduceat(codes << (np.uint64(bits) * position.astype(np.uint64)), starts)
    ids = np.fromiter(map(vocabulary.__getitem__, names), dtype=np.int32, count=len(names))
    order = np.argsort(keys)
    return CharNgramIndex(code_of, bits, keys[order], ids[order], ngrams)
