"""Serving a trained router: load a version's artifacts once per process, then rank candidates.

Usage from serving (``routing`` imports this module; ``training`` never imports ``routing``)::

    router = Router.objects.get(organization=org, slug=slug)      # or a cached row
    if router.active_version_id is None: ...                      # 404: not trained yet
    predictor = predictor_load(router.active_version_id)          # cached per process
    ranked = predictor.rank(prompt, tradeoff, candidates, prices)  # ~1 ms
    ranked[0].model                                                # the choice

Detecting activation: activating a version (``services.version_activate``) changes
``Router.active_version_id`` and bumps ``Router.activated_at``. A serving process that caches
router rows only needs to re-read those two columns (or expire its cache when ``activated_at``
moves); the predictor cache is keyed by (version id, checksum), so a new active version loads
once and an old one stays warm for a rollback. Artifacts are verified against their sha256
checksum at load; a mismatch raises ``ArtifactError``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from django.core.files.storage import default_storage
from prometheus_client import Counter

from training.learner.artifacts import ArtifactError, router_from_files
from training.learner.router import TrainedRouter, mix_key
from training.models import RouterVersion
from training.tokens import estimated_tokens

CACHE_SIZE = 32
# Why a request's task decided nothing (``task_hint.reason`` in the answers).
NO_HINT_ROW = "the version has no hint for this task"
HINT_NOT_AT_TRADEOFF = "task hints apply at tradeoff 0 only (where they were chosen)"

__all__ = [
    "ArtifactError",
    "Predictor",
    "RankedModel",
    "predictor_cache_clear",
    "predictor_for_version",
    "predictor_is_loaded",
    "predictor_load",
]


class RankedModel(NamedTuple):
    model: str
    score: float  # predicted score (dataset units, higher is better when maximizing)
    expected_cost: float  # USD per request (or the training cost unit when no prices)
    utility: float  # what the decision maximises: score + offset - λ · normalised cost


@dataclass
class Predictor:
    """A loaded router version."""

    version_id: int
    checksum: str
    router: TrainedRouter
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {m: i for i, m in enumerate(self.router.models)}

    @property
    def models(self) -> list[str]:
        return list(self.router.models)

    def rank(
        self,
        prompt: str,
        tradeoff: float,
        candidates: list[str] | None = None,
        prices: dict[str, float] | None = None,
        bias: dict[str, float] | None = None,
        task_row: int | None = None,
    ) -> list[RankedModel]:
        """Candidates best first for ``prompt`` at ``tradeoff`` (0 = quality … 1 = cheapest).

        ``candidates`` restricts the choice to a subset of the version's models (unknown ids
        are ignored; an empty result means none of them was trained). ``prices`` are USD per
        million tokens (blended) per model; when given for every candidate they give the
        expected costs shown (price x estimated tokens / 1e6). The decision itself always uses
        the costs the version was calibrated with, so a tradeoff means at serving what the
        version's report showed (training/learner/router.py). ``bias`` per model (the online
        feedback calibration, ``routing.calibration``) is added to the predicted scores the
        decision uses. ``task_row`` (``task_row``) blends the task's means into the predictions
        where the hint applies (``TrainedRouter.hint_applies``, else ignored): the scores
        returned are then the blended ones, else the version's own (never with ``bias``)."""
        trained = self.router
        names = candidates if candidates is not None else trained.models
        index = self._index
        chosen = [index[m] for m in dict.fromkeys(names) if m in index]
        if not chosen:
            return []
        # The policy's arrays for these candidates are derived once per (tradeoff, candidates)
        # (``TrainedRouter.utilities`` arithmetic; tests compare the two on a trained router);
        # a policy without an incumbent bonus skips the prompt's segment or cluster lookup.
        policy = trained.chosen_policy(tradeoff, chosen)
        predicted, incumbent = trained.predict_one_with_incumbent(
            prompt, chosen, incumbent_wanted=bool(policy.bonus)
        )
        if prices is not None and all(trained.models[i] in prices for i in chosen):
            tokens = estimated_tokens(prompt)
            costs = np.array([prices[trained.models[i]] * tokens / 1e6 for i in chosen])
        else:
            costs = trained.mean_costs[chosen]
        hint = trained.task_hint if trained.hint_applies(tradeoff) else None
        if task_row is not None and hint is not None:
            predicted = hint.blended(predicted, task_row, chosen)
        calibrated = predicted
        if bias:
            calibrated = predicted + np.array([bias.get(trained.models[i], 0.0) for i in chosen])
        if task_row is not None and hint is not None and not hint.own_policy:
            # TrainedRouter.choose_hinted_many
            utility = calibrated - policy.lam * policy.norm_costs
        else:
            utility = trained.utility_one(calibrated, policy, mix_key(prompt), incumbent)
        order = np.lexsort((policy.mean_costs, -utility))
        return [
            RankedModel(
                trained.models[chosen[k]],
                float(predicted[k]),
                float(costs[k]),
                float(utility[k]),
            )
            for k in order
        ]

    def task_row(
        self, task: str | None, tradeoff: float = 0.0
    ) -> tuple[int | None, str | None, str | None]:
        """The version's task-hint row for a request's ``task`` at ``tradeoff``, the label it
        serves (the task's own or its parent's) and, when there is a task but no row, why:
        (None, None, reason) when the version has no hint row for it or the hint does not apply
        at this tradeoff (``TrainedRouter.hint_applies``); (None, None, None) without a task."""
        hint = self.router.task_hint
        row = None if task is None or hint is None else hint.row_of(task)
        if task is None:
            return None, None, None
        if row is None or hint is None:
            return None, None, NO_HINT_ROW
        if not self.router.hint_applies(tradeoff):
            return None, None, HINT_NOT_AT_TRADEOFF
        return row, hint.tasks[row], None


_cache: OrderedDict[tuple[int, str], Predictor] = OrderedDict()
_lock = threading.Lock()

# Where versions get loaded: "request" means a decision waited for storage (the cold start the
# warm-up exists to prevent); "warmup" is activation or the serving processes' background warm.
ARTIFACT_LOADS = Counter(
    "routerhub_router_version_loads",
    "Router versions loaded from storage into this process: on the request path or ahead of it.",
    ["path"],
)


def _read(path: str) -> bytes:
    with default_storage.open(path, "rb") as handle:
        return bytes(handle.read())


def predictor_is_loaded(version: RouterVersion) -> bool:
    """Whether ``version`` is in this process's cache (deciding with it reads no storage)."""
    return (version.pk, version.checksum) in _cache


def predictor_for_version(version: RouterVersion, *, warmup: bool = False) -> Predictor:
    """The predictor of ``version``, loaded from storage on first use in this process
    (``warmup``: loaded ahead of the decisions that will use it)."""
    key = (version.pk, version.checksum)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    files = {name: _read(spec["path"]) for name, spec in version.artifact_files.items()}
    digests = {name: spec["sha256"] for name, spec in version.artifact_files.items()}
    predictor = Predictor(
        version.pk, version.checksum, router_from_files(files, digests, version.checksum)
    )
    # A version stored before its serving form (``serving.npz``) builds the forest, projection
    # and lookup tables on its first ranking (0.8-1.2 s against 1 ms for the ARC router on a
    # busy 2-core machine); one with it has them at load. Paid here, where the load is paid, so
    # a cached predictor always decides at full speed.
    predictor.rank("warm-up", 0.5)
    with _lock:
        _cache[key] = predictor
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    ARTIFACT_LOADS.labels(path="warmup" if warmup else "request").inc()
    return predictor


def predictor_load(version_id: int) -> Predictor:
    """Like ``predictor_for_version`` from an id (one query to read the checksum)."""
    version = RouterVersion.objects.only("pk", "checksum", "artifact_files").get(pk=version_id)
    return predictor_for_version(version)


def predictor_cache_clear() -> None:
    with _lock:
        _cache.clear()
