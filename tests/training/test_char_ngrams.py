"""The integer index of char n-grams finds exactly the vocabulary ids of ``char_terms``' n-grams."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from training.learner.char_ngrams import char_ngram_index
from training.learner.featurizer import Featurizer, FeaturizerConfig, featurizer_fit
from training.learner.prompt_text import char_terms

CORPUS = [
    "What is 12 + 30? Answer with a number.",
    "def add(a, b):\n    return a + b  # fix the bug",
    "Résumé: a café in Zürich — naïve façade! Ünïcödé wörds",
    "Solve $x^2 = 9$ and explain each step; x² ≤ 9.",
    "中文的问题是什么 日本語のテキスト 한국어 문장",
    "a I b ok go to it",  # words shorter than the n-gram sizes
    "emoji 🙂🙂 party 🎉 and \ud800 lone surrogate",
]
WORDS = st.text(
    alphabet=st.sampled_from(sorted({c for t in CORPUS for c in t.lower() if not c.isspace()}))
    | st.characters(),
    min_size=1,
    max_size=12,
).filter(lambda w: w == w.lower() and w.split() == [w])


def _reference(featurizer: Featurizer, word: str) -> bytes:
    vocab = featurizer.char_vocab
    terms = char_terms(word, featurizer.config.char_ngrams)
    return np.asarray([vocab[t] for t in terms if t in vocab], dtype=np.int32).tobytes()


def _fitted(ngrams: tuple[int, int]) -> Featurizer:
    config = FeaturizerConfig(min_df=1, svd_components=2, char_ngrams=ngrams)
    return featurizer_fit(CORPUS, config)[0]


_shared = functools.cache(_fitted)  # one per n-gram range across the generated examples


@pytest.mark.parametrize("ngrams", [(3, 5), (4, 6), (2, 4)])
@hypothesis_settings(max_examples=150, derandomize=True, deadline=None)
@given(words=st.lists(WORDS, max_size=40))
def test_new_words_get_the_ids_of_their_char_terms_in_order(
    ngrams: tuple[int, int], words: list[str]
) -> None:
    featurizer = _shared(ngrams)
    words += [w for text in CORPUS for w in text.lower().split()]

    found = featurizer._char_ids_of_new_words(words)

    assert featurizer._char_index is not None  # the integer path answered
    assert found == {word: _reference(featurizer, word) for word in words}


def test_prompts_count_the_same_char_terms_on_a_fresh_and_a_warm_featurizer() -> None:
    fresh, warm = _fitted((3, 5)), _fitted((3, 5))  # warm: memo filled the per-word way
    for text in CORPUS:
        for word in text.lower().split():
            warm._char_ids_of_word(word)
    for text in [*CORPUS, " ".join(CORPUS), "unseen zzzz qqqq", ""]:
        ids_fresh, counts_fresh = fresh._char_counts(text)
        ids_warm, counts_warm = warm._char_counts(text)
        np.testing.assert_array_equal(ids_fresh, ids_warm)
        np.testing.assert_array_equal(counts_fresh, counts_warm)


def test_a_vocabulary_too_wide_for_integer_keys_has_no_index() -> None:
    wide = {"".join(chr(0x4E00 + i + k) for k in range(3)): i for i in range(0, 60_000, 3)}
    assert char_ngram_index(wide, (3, 5)) is None
    assert char_ngram_index({"abc": 0, " ab": 1}, (3, 5)) is not None
