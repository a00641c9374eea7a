"""The numpy featurizer reproduces scikit-learn's TF-IDF and survives a JSON/NPZ round trip."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer

from training.learner import featurizer as f
from training.learner.featurizer import FeaturizerConfig, featurizer_fit

CORPUS = [
    "What is 12 + 30? Answer with a number.",
    "Write a haiku about the sea at night.",
    "def add(a, b):\n    return a + b  # fix the bug",
    "Solve $x^2 = 9$ and explain each step.",
    "Résumé: a café in Zürich — naïve façade!",
    "a I b",  # words shorter than the char n-gram size
    "",
    "What is the capital of France? What is the capital of Spain?",
]
NEW_TEXTS = ["What is the sea? Write 3 words.", "unseen tokens only zzz", ""]


def _fit(**overrides: int) -> tuple[FeaturizerConfig, object]:
    config = FeaturizerConfig(min_df=1, svd_components=4, **overrides)  # type: ignore[arg-type]
    featurizer, _, _ = featurizer_fit(CORPUS, config)
    return config, featurizer


def _sklearn(
    analyzer: str, ngrams: tuple[int, int], vocabulary: dict[str, int] | None = None
) -> TfidfVectorizer:
    return TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=1, vocabulary=vocabulary
    ).fit(CORPUS)


def test_word_and_char_blocks_equal_sklearn_tfidf() -> None:
    _, featurizer = _fit()
    word = _sklearn("word", (1, 2))
    char = _sklearn("char_wb", (3, 5))
    assert featurizer.word_vocab == word.vocabulary_  # type: ignore[attr-defined]
    assert featurizer.char_vocab == char.vocabulary_  # type: ignore[attr-defined]
    ours = featurizer.tfidf_matrix(CORPUS + NEW_TEXTS).toarray()  # type: ignore[attr-defined]
    expected = np.hstack(
        [word.transform(CORPUS + NEW_TEXTS).toarray(), char.transform(CORPUS + NEW_TEXTS).toarray()]
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_a_capped_vocabulary_still_transforms_like_sklearn() -> None:
    _, featurizer = _fit(word_max_features=10, char_max_features=25)
    word = _sklearn("word", (1, 2), featurizer.word_vocab)  # type: ignore[attr-defined]
    char = _sklearn("char_wb", (3, 5), featurizer.char_vocab)  # type: ignore[attr-defined]
    assert len(featurizer.word_vocab) == 10  # type: ignore[attr-defined]
    ours = featurizer.tfidf_matrix(NEW_TEXTS + CORPUS).toarray()  # type: ignore[attr-defined]
    expected = np.hstack(
        [word.transform(NEW_TEXTS + CORPUS).toarray(), char.transform(NEW_TEXTS + CORPUS).toarray()]
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_single_prompt_transform_equals_the_batch_rows() -> None:
    _, featurizer = _fit()
    matrix, dense = featurizer.transform_many(CORPUS)  # type: ignore[attr-defined]
    for i, text in enumerate(CORPUS):
        index, values, one_dense = featurizer.transform(text)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(index, matrix[i].indices)
        np.testing.assert_allclose(values, matrix[i].data)
        np.testing.assert_allclose(one_dense, dense[i])


def test_parameters_round_trip_through_json_and_npz_without_pickle() -> None:
    import io
    import json

    from training.learner.featurizer import Featurizer

    _, featurizer = _fit()
    meta = json.loads(json.dumps(featurizer.to_json()))  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    np.savez(buffer, **featurizer.to_arrays())  # type: ignore[attr-defined]
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        restored = Featurizer.from_parts(meta, {k: npz[k] for k in npz.files})
    for text in NEW_TEXTS:
        np.testing.assert_allclose(restored.transform(text)[2], featurizer.transform(text)[2])  # type: ignore[attr-defined]


def test_features_seen_at_fit_time_equal_the_serving_transform() -> None:
    featurizer, matrix, dense = featurizer_fit(CORPUS, FeaturizerConfig(min_df=1, svd_components=4))
    again, dense_again = featurizer.transform_many(CORPUS)
    np.testing.assert_allclose(matrix.toarray(), again.toarray(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dense, dense_again, rtol=1e-10, atol=1e-12)


ASCII_TEXT = st.text(alphabet=st.characters(max_codepoint=127), max_size=300)
ANY_TEXT = st.text(max_size=300)


@hypothesis_settings(max_examples=300, derandomize=True, deadline=None)
@given(text=st.one_of(ASCII_TEXT, ANY_TEXT))
def test_fast_paths_count_exactly_what_the_patterns_match(text: str) -> None:
    """The serving fast paths (translate tables for ASCII text, ``\\w\\w+``) must give the
    features the regexes give, or a trained router would see different inputs."""
    import re

    from training.learner import prompt_text as f

    tokens = re.findall(r"(?u)\b\w\w+\b", text.lower())
    assert f.WORD_PATTERN.findall(text.lower()) == tokens
    assert f.word_tokens(text) == tokens
    bigrams = [" ".join(tokens[i : i + 2]) for i in range(len(tokens) - 1)]
    assert f.word_terms(text, (1, 2)) == tokens + bigrams
    stats = f.text_statistics(text)
    chars = len(text) or 1
    for name, pattern in (("digit_ratio", r"\d"), ("upper_ratio", r"[A-Z]"),
                          ("punct_ratio", r"[^\w\s]")):  # fmt: skip
        assert stats[f.STAT_NAMES.index(name)] == len(re.findall(pattern, text)) / chars, name


def test_script_code_and_math_statistics_tell_prompts_apart() -> None:
    chinese = f.text_statistics("下列哪一项是正确的？请选择答案。")
    code = f.text_statistics("def add(a, b):\n    return a + b\n")
    math_prompt = f.text_statistics("Solve 3*x + 4 = 19 for x, then compute x^2 - 1.")
    cjk, ops, indented = (
        f.STAT_NAMES.index(n) for n in ("cjk_ratio", "operator_ratio", "indented_lines")
    )
    assert chinese[cjk] > 0.8 and code[cjk] == math_prompt[cjk] == 0.0
    assert code[indented] > 0 and chinese[indented] == math_prompt[indented] == 0.0
    assert math_prompt[ops] > code[ops] > chinese[ops] == 0.0


def test_a_featurizer_saved_before_the_script_statistics_keeps_its_own_features() -> None:
    featurizer, _, dense = f.featurizer_fit(
        ["Compute 2 + 2.", "Write a poem.", "计算二加二。", "def f(): pass"] * 3,
        f.FeaturizerConfig(min_df=1, svd_components=2),
    )
    assert dense.shape[1] == 2 + len(f.STAT_NAMES)
    meta = featurizer.to_json()
    meta["stat_names"] = list(f.LEGACY_STAT_NAMES)  # what an older version stored
    legacy = f.Featurizer.from_parts(meta, featurizer.to_arrays())
    _, old_dense = legacy.transform_many(["计算三加三。"])
    assert old_dense.shape == (1, 2 + len(f.LEGACY_STAT_NAMES))
    np.testing.assert_allclose(
        old_dense[0], dense_of_new(featurizer, "计算三加三。")[: old_dense.shape[1]]
    )


def dense_of_new(featurizer: f.Featurizer, text: str) -> np.ndarray:
    return featurizer.transform_many([text])[1][0]
