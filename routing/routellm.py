"""RouteLLM's serving convention: ``model: "router-<slug>-<threshold>"`` and threshold calibration.

RouteLLM routes between two models: the *strong* one when the router's predicted strong-win rate
for the prompt is at least the threshold in the model name, else the *weak* one. For a RouterHub
router the pair comes from its active version's report: **strong** is the candidate with the best
mean score on the training data, **weak** the cheapest of the others (by the mean cost the version
decides with; the lowest-scoring when costs are unknown). The strong-win rate of a prompt is
``(1 + ŝ_strong - ŝ_weak) / 2`` clipped to 0..1, where ``ŝ`` are the version's predicted scores
(oriented higher-is-better): the report's RouteLLM rate mapped onto 0..1; for 0..1 scores
(correctness, preference win rates) it is 0.5 when both models are expected to do equally well.

``calibrate`` answers RouteLLM's ``calibrate_threshold``: the ``1 - strong_share`` quantile of the
rates over the version's training prompts (at most ``CALIBRATION_MAX_PROMPTS``, an even sample), so
that ``rate >= threshold`` sends ``strong_share`` of that traffic to the strong model.

``router-<slug>-<P>%`` (``router-mf-30%``) names the share instead of the threshold: P percent of
calls to the strong model (RouteLLM's ``--strong-model-pct``, as a percentage), served with the
threshold ``calibrate`` gives the router's active version for that share.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from asgiref.sync import sync_to_async

from routerhub.errors import BadRequest, NotFound
from routing.routers import RankedChoice, RouterDecision, router_row_async
from training import serving
from training.serving import RouterVersion

MODEL_NAME = re.compile(
    r"router-(?P<slug>[-a-zA-Z0-9_]+)-(?P<threshold>[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)(?P<pct>%)?"
)
MODEL_NAME_MAX = 80  # UsageRecord.router's width
CALIBRATION_MAX_PROMPTS = 20_000
_CACHE_SIZE = 64


@dataclass(frozen=True)
class Pair:
    strong: str
    weak: str


@dataclass(frozen=True)
class RouteLLMName:
    """A parsed ``router-<slug>-<threshold>`` (``strong_share`` ``None``) or ``-<P>%`` name."""

    slug: str
    threshold: float | None
    strong_share: float | None = None


def routellm_model_parse(model: str) -> RouteLLMName | None:
    """The parts of ``router-<slug>-<threshold>`` or ``router-<slug>-<P>%``, ``None`` for any
    other name."""
    match = MODEL_NAME.fullmatch(model)
    if match is None:
        return None
    if len(model) > MODEL_NAME_MAX:
        # The name is the usage record's router: a longer one was served, then refused by the
        # database at settlement (set aside, the request charged its whole hold by the sweep).
        raise BadRequest(
            f"A RouteLLM model name is at most {MODEL_NAME_MAX} characters; write the threshold "
            "with fewer digits.",
            param="model",
        )
    value = float(match["threshold"])
    if match["pct"]:
        if not 0.0 <= value <= 100.0:
            raise BadRequest(
                f"The percentage in '{model}' must be from 0 to 100 (the share of calls to the "
                "strong model).",
                param="model",
            )
        return RouteLLMName(match["slug"], None, value / 100.0)
    if not 0.0 <= value <= 1.0:
        raise BadRequest(
            f"The threshold in '{model}' must be from 0 to 1 (a strong-win rate), or name a "
            f"share of strong calls as a percentage (router-{match['slug']}-30%); "
            "POST /api/v1/routers/{slug}/calibrate gives the threshold for a share.",
            param="model",
        )
    return RouteLLMName(match["slug"], value)


def version_pair(version: RouterVersion) -> Pair:
    """The strong and weak models of a trained version (see the module doc)."""
    report = version.report or {}
    rows = [r for r in report.get("models", []) if r.get("id") in version.candidates]
    if len(rows) < 2:
        raise BadRequest("RouteLLM routing needs a router version with at least 2 candidates.")
    maximize = version.dataset.maximize if version.dataset is not None else True
    sign = 1.0 if maximize else -1.0
    strong = max(rows, key=lambda r: sign * float(r["mean_score"]))
    others = [r for r in rows if r is not strong]
    if all(r.get("mean_cost") is not None for r in others):
        weak = min(others, key=lambda r: float(r["mean_cost"]))
    else:
        weak = min(others, key=lambda r: sign * float(r["mean_score"]))
    return Pair(strong=str(strong["id"]), weak=str(weak["id"]))


_pairs: OrderedDict[int, Pair] = OrderedDict()


def _pair_cached(version_id: int) -> Pair:
    cached = _pairs.get(version_id)
    if cached is None:
        version = RouterVersion.objects.select_related("dataset").get(pk=version_id)
        cached = _pairs[version_id] = version_pair(version)
        while len(_pairs) > _CACHE_SIZE:
            _pairs.popitem(last=False)
    return cached


def strong_win_rates(version: RouterVersion, pair: Pair, prompts: list[str]) -> np.ndarray:
    """The strong-win rate (0..1) of each prompt under ``version``."""
    router = serving.predictor_for_version(version).router
    strong, weak = router.models.index(pair.strong), router.models.index(pair.weak)
    predicted = router.predict_many(prompts)
    rates: np.ndarray = np.clip((1.0 + predicted[:, strong] - predicted[:, weak]) / 2.0, 0.0, 1.0)
    return rates


async def routellm_decide_async(
    *, organization_id: int, model_id: str, name: RouteLLMName, prompt: str
) -> RouterDecision:
    """Strong first when the prompt's strong-win rate reaches the name's threshold (for a
    percentage, the calibrated one), else weak first."""
    slug = name.slug
    started = time.perf_counter()
    row = await router_row_async(organization_id, slug)
    if row is None or row.version is None:
        raise NotFound(
            f"No trained router '{slug}' in this organization for '{model_id}'; "
            "GET /api/v1/routers lists them.",
            param="model",
            metadata={"model": model_id},
        )
    version = row.version
    pair = await sync_to_async(_pair_cached, thread_sensitive=False)(version.pk)
    threshold = name.threshold
    if threshold is None:
        assert name.strong_share is not None
        threshold = await sync_to_async(share_threshold, thread_sensitive=False)(
            version, name.strong_share
        )
    rate = float(strong_win_rates(version, pair, [prompt])[0])
    strong = RankedChoice(pair.strong, rate, None)  # the strong entry carries the rate
    weak = RankedChoice(pair.weak, None, None)
    return RouterDecision(
        router=model_id,
        version=version.number,
        ranked=[strong, weak] if rate >= threshold else [weak, strong],
        latency_ms=(time.perf_counter() - started) * 1000,
        strategy="routellm",
        router_id=row.router_id,
    )


def _calibration_prompts(version: RouterVersion) -> list[str]:
    if version.dataset is None:
        raise BadRequest("The active version's dataset was deleted; retrain to calibrate.")
    prompts = serving.dataset_prompts(version.dataset)
    if len(prompts) > CALIBRATION_MAX_PROMPTS:
        step = len(prompts) / CALIBRATION_MAX_PROMPTS
        prompts = [prompts[int(i * step)] for i in range(CALIBRATION_MAX_PROMPTS)]
    return prompts


_calibrations: OrderedDict[tuple[int, str], tuple[Pair, np.ndarray]] = OrderedDict()


def _calibration_rates(version: RouterVersion) -> tuple[Pair, np.ndarray]:
    """The pair and the rates over the version's prompts, computed once per process."""
    key = (version.pk, version.checksum)
    cached = _calibrations.get(key)
    if cached is None:
        pair = version_pair(version)
        cached = _calibrations[key] = (
            pair,
            strong_win_rates(version, pair, _calibration_prompts(version)),
        )
        while len(_calibrations) > _CACHE_SIZE // 8:  # up to 20,000 floats each
            _calibrations.popitem(last=False)
    return cached


def share_threshold(version: RouterVersion, strong_share: float) -> float:
    """The threshold sending ``strong_share`` of the version's training prompts to strong."""
    return float(np.quantile(_calibration_rates(version)[1], 1.0 - strong_share))


def routellm_calibrate(*, version: RouterVersion, strong_share: float) -> dict[str, object]:
    """``share_threshold`` with the pair and the share of the prompts it achieves."""
    pair, rates = _calibration_rates(version)
    threshold = share_threshold(version, strong_share)
    return {
        "threshold": threshold,
        "strong_share": strong_share,
        "achieved_share": float(np.mean(rates >= threshold)),
        "strong_model": pair.strong,
        "weak_model": pair.weak,
        "prompts": len(rates),
        "version": version.number,
    }
