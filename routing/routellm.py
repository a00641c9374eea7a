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
that ``rate >= threshold`` sends ``strong_share`` of that traffic to the strong model. The rates are
computed once per version and stored with it (training.routellm_rates).

``router-<slug>-<P>%`` (``router-mf-30%``) names the share instead of the threshold: P percent of
calls to the strong model (RouteLLM's ``--strong-model-pct``, as a percentage), served with the
threshold ``calibrate`` gives the router's active version for that share.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
from asgiref.sync import sync_to_async

from routerhub.errors import BadRequest, NotFound
from routerhub.router_names import ROUTELLM_MODEL_NAME, ROUTELLM_MODEL_NAME_MAX
from routing.routers import RankedChoice, RouterDecision, router_row_async
from training.serving import RouterVersion, calibration_rates, strong_win_rates, version_pair

if TYPE_CHECKING:
    from training.serving import Pair

_CACHE_SIZE = 64


@dataclass(frozen=True)
class RouteLLMName:
    """A parsed ``router-<slug>-<threshold>`` (``strong_share`` ``None``) or ``-<P>%`` name."""

    slug: str
    threshold: float | None
    strong_share: float | None = None


def routellm_model_parse(model: str) -> RouteLLMName | None:
    """The parts of ``router-<slug>-<threshold>`` or ``router-<slug>-<P>%``, ``None`` for any
    other name."""
    match = ROUTELLM_MODEL_NAME.fullmatch(model)
    if match is None:
        return None
    if len(model) > ROUTELLM_MODEL_NAME_MAX:
        # The name is the usage record's router: a longer one was served, then refused by the
        # database at settlement (set aside, the request charged its whole hold by the sweep).
        raise BadRequest(
            f"A RouteLLM model name is at most {ROUTELLM_MODEL_NAME_MAX} characters; write the "
            "threshold with fewer digits.",
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
        # In decimal: the name calibrate answers reads back its exact share.
        return RouteLLMName(match["slug"], None, float(Decimal(match["threshold"]) / 100))
    if not 0.0 <= value <= 1.0:
        raise BadRequest(
            f"The threshold in '{model}' must be from 0 to 1 (a strong-win rate), or name a "
            f"share of strong calls as a percentage (router-{match['slug']}-30%); "
            "POST /api/v1/routers/{slug}/calibrate gives the threshold for a share.",
            param="model",
        )
    return RouteLLMName(match["slug"], value)


_pairs: OrderedDict[int, Pair] = OrderedDict()


def _pair_cached(version_id: int) -> Pair:
    cached = _pairs.get(version_id)
    if cached is None:
        version = RouterVersion.objects.select_related("dataset").get(pk=version_id)
        cached = _pairs[version_id] = version_pair(version)
        while len(_pairs) > _CACHE_SIZE:
            _pairs.popitem(last=False)
    return cached


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
        # The copy of the routing cache has no report or dataset: the rates are the version's.
        threshold = await sync_to_async(share_threshold, thread_sensitive=False)(
            version.pk, version.checksum, name.strong_share
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


def share_threshold(version_id: int, checksum: str, strong_share: float) -> float:
    """The threshold sending ``strong_share`` of the version's training prompts to strong."""
    return float(np.quantile(calibration_rates(version_id, checksum)[1], 1.0 - strong_share))


def routellm_calibrate(*, version: RouterVersion, strong_share: float) -> dict[str, object]:
    """``share_threshold`` with the pair and the share of the prompts it achieves."""
    pair, rates = calibration_rates(version.pk, version.checksum)
    threshold = share_threshold(version.pk, version.checksum, strong_share)
    return {
        "threshold": threshold,
        "strong_share": strong_share,
        "achieved_share": float(np.mean(rates >= threshold)),
        "strong_model": pair.strong,
        "weak_model": pair.weak,
        "prompts": len(rates),
        "version": version.number,
    }
