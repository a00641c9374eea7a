"""The word-cluster probe (bench/router_word_clusters.py): spherical k-means on the content terms
of the word TF-IDF groups prompts by what they are about, ignoring a template they all share.

Generated prompts of two tasks in one multiple-choice layout: each question draws five of its
task's own 20 made-up words; the options are long in half of the prompts of both tasks, made of
shared filler words (in more than a fifth of the prompts: template, not content)."""

from __future__ import annotations

import numpy as np

from bench.router_word_clusters import WordClusters, word_k_choose
from tests.training.task_prompts import WORDS
from training.learner.featurizer import featurizer_fit
from training.learner.trainer import _fold_ids

_LETTERS = np.random.default_rng(5).integers(0, 26, size=(2, 20, 7))
VOCABULARY = [["".join(chr(97 + c) for c in word) for word in task] for task in _LETTERS]


def _prompts(rows: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    prompts, tasks = [], np.arange(rows) % 2
    for i, task in enumerate(tasks):
        size = 9 if (i // 2) % 2 else 1
        options = [" ".join(rng.choice(WORDS, size=size)) for _ in range(4)]
        prompts.append(
            "The following is a multiple choice question. Answer with the letter only.\n\n"
            f"{' '.join(rng.choice(VOCABULARY[task], size=5))}?\n"
            + "".join(f"{'ABCD'[j]}. {o}\n" for j, o in enumerate(options))
            + "Answer:"
        )
    return prompts, tasks


def test_word_clusters_split_by_content_words_not_by_the_shared_layout() -> None:
    prompts, tasks = _prompts(400, seed=0)
    featurizer, tfidf, _ = featurizer_fit(prompts)
    words = tfidf[:, : len(featurizer.word_vocab)]
    scores = np.zeros((len(prompts), 2))
    scores[np.arange(len(prompts)), tasks] = 1.0  # each task's own best model

    clusters = WordClusters(words, scores, 2, seed=0, share=0.2)
    labels = clusters.labels(words)

    vocabulary = sorted(featurizer.word_vocab, key=featurizer.word_vocab.__getitem__)
    kept = {vocabulary[c] for c in clusters.columns}
    assert "answer" not in kept and not kept & {w.lower() for w in WORDS}
    purity = max(np.mean(labels == tasks), np.mean(labels != tasks))
    assert purity > 0.95
    k, _ = word_k_choose(words, scores, _fold_ids(len(prompts), 3, 0), share=0.2)
    assert k == 2
    held_out, held_out_tasks = _prompts(200, seed=1)
    test_words = featurizer.transform_many(held_out)[0][:, : len(featurizer.word_vocab)]
    assert np.mean(clusters.incumbents(test_words) == held_out_tasks) > 0.95
