"""What drift sampling costs a routed request (not part of ``make bench``): the request path's
``drift_sample_observe`` at the default sample rate, and the background flush's featurizing per
sampled prompt, with a featurizer fitted on 2,000 synthetic prompts.

    ROUTERHUB_ENV=test REDIS_URL=redis://127.0.0.1:6379/0 python -m bench.drift_sampling
"""

from __future__ import annotations

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
django.setup()

from django.conf import settings  # noqa: E402

from training import drift_samples  # noqa: E402
from training.learner.featurizer import featurizer_fit  # noqa: E402

WORDS = [
    "route",
    "the",
    "request",
    "to",
    "a",
    "cheaper",
    "model",
    "when",
    "the",
    "prompt",
    "is",
    "simple",
    "and",
    "short",
]


def prompts(count: int) -> list[str]:
    return [
        " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 40)) + f" #{i}" for i in range(count)
    ]


def nothing(version: object, text: str) -> None:
    """The loop's own cost, subtracted."""


def main() -> None:
    texts = prompts(2000)
    featurizer, _, _ = featurizer_fit(texts)
    drift_samples._flusher_start = lambda: None  # type: ignore[assignment] # measure the path only
    version = object()
    calls = 200_000
    stream = texts * (calls // len(texts))
    started = time.perf_counter()
    for text in stream:
        nothing(version, text)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    for text in stream:
        drift_samples.drift_sample_observe(version, text)  # type: ignore[arg-type]
    per_call = (time.perf_counter() - started - baseline) / calls * 1e6
    started = time.perf_counter()
    for text in texts:
        featurizer.transform(text)
    per_prompt = (time.perf_counter() - started) / len(texts) * 1e3
    print(
        f"request path at DRIFT_SAMPLE_RATE={settings.DRIFT_SAMPLE_RATE}: {per_call:.2f} µs/call; "
        f"background featurizing: {per_prompt:.3f} ms per sampled prompt"
    )


if __name__ == "__main__":
    main()
