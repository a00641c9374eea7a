"""What a router experiment adds to a decision (README "Router lifecycle"), in process.

``python -m bench.router_lifecycle``: trains two small routers (no database), then times, per
request: the decision itself (ranking by the active version), what a policy adds on the request
path (the decision log, the A/B hash, exploration) and what the shadow costs after the answer
(its own ranking and the log entry). Medians of many runs, microseconds.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
django.setup()

import numpy as np  # noqa: E402

from routing import router_policy  # noqa: E402
from routing.routers import RankedChoice, RouterDecision, RouterRow  # noqa: E402
from training.learner.trainer import TrainerConfig, TrainingData, router_fit  # noqa: E402
from training.models import RouterVersion  # noqa: E402
from training.predictor import Predictor, _cache  # noqa: E402

PROMPTS = ["Compute {a} + {b} * 3.", "Write a short poem about the {w} at dawn."]
WORDS = ["river", "forest", "lantern", "harbour", "meadow", "violin"]


def _data(rows: int, seed: int) -> TrainingData:
    rng = np.random.default_rng(seed)
    prompts, scores = [], []
    for i in range(rows):
        math = i % 3 == 0
        template = PROMPTS[0] if math else PROMPTS[1]
        prompts.append(template.format(a=i, b=i % 7, w=WORDS[i % len(WORDS)]) + f" #{i}")
        noise = rng.random(2)
        scores.append([noise[0] < (0.95 if math else 0.35), noise[1] < (0.55 if math else 0.95)])
    return TrainingData(
        prompts=prompts,
        models=["cheap", "dear"],
        scores=np.array(scores, dtype=float),
        costs=np.tile([0.001, 0.01], (rows, 1)),
        binary=[True, True],
    )


def _version(pk: int, rows: int) -> RouterVersion:
    fitted = router_fit(_data(rows, pk), TrainerConfig(folds=2, threads=1)).router
    version = RouterVersion(pk=pk, number=pk, checksum=f"bench-{pk}", artifact_files={})
    _cache[(version.pk, version.checksum)] = Predictor(pk, version.checksum, fitted)
    return version


def _median_us(work: Callable[[], object], runs: int = 2000) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> None:
    active, shadow = _version(1, 180), _version(2, 60)
    policy = router_policy.ServingPolicy(exploration=0.1, shadow=shadow, shadow_share=1.0)
    row = RouterRow(1, 1, "bench", ("cheap", "dear"), 0.5, active, policy)
    prompt = "Write a short poem about the comet at dawn."
    ranker = router_policy.serving.predictor_for_version(active)
    ranked = [RankedChoice(r.model, r.score, r.expected_cost) for r in ranker.rank(prompt, 0.5)]

    def on_the_request_path() -> object:
        version = router_policy.serving_version(active, policy, 1, prompt)
        log = router_policy.decision_log_new(row, version, prompt, 0.5, None)
        decision = RouterDecision("router/bench", 1, ranked, 0.0, "trained", router_id=1, log=log)
        return router_policy.decision_explore(decision)

    decided = on_the_request_path()
    assert isinstance(decided, RouterDecision)
    print(
        f"decision (active version ranks):         {_median_us(lambda: ranker.rank(prompt, 0.5)):8.1f} us"
    )
    print(f"added on the request path by a policy:   {_median_us(on_the_request_path):8.1f} us")
    print(
        "after the answer (shadow ranks, log entry):"
        f"{_median_us(lambda: router_policy.decision_log_entry(decided, 'dear'), runs=1000):6.1f} us"
    )  # fmt: skip


if __name__ == "__main__":
    main()
