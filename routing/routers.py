"""Serving routers: ``router/<slug>`` and ``router/auto`` rank catalog models for each prompt.

A decision featurizes the prompt once, scores every candidate with the router's active version
(``training.serving``, loaded once per process and kept in memory) and orders them by
``score - λ·cost`` at the requested tradeoff; the gateway calls the first and falls back down the
ranking. Router rows are cached per process for ``ROUTER_CACHE_TTL`` (0.5 s): an activation or
rollback changes decisions in every worker within a second. No decision waits for a version to
load (the first after an activation took 68 ms): rows are reloaded ahead of expiry and versions
of activations seen loaded before their rows are published (``refresh_ahead``,
``routers_watch_activations``); a row reloaded before that decides with the loaded version.

``router/auto`` is the platform router: the router ``auto`` of the platform organization, trained by
an operator with ``manage.py train_platform_router``. Until it has a version it ranks by a
documented heuristic: models that can serve the request, then by price — dearest first for
quality-leaning tradeoffs (< 0.5, price as a proxy for capability), cheapest first otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from routerhub.domain import InvalidInput, NotFound
from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead
from routing import router_policy as policy
from routing.budget import KeyBudget
from routing.calibration import calibration_bias
from routing.gateway.catalog_cache import CatalogSnapshot, ModelInfo
from routing.router_request import TRADEOFF_NAMES as TRADEOFF_NAMES
from routing.router_request import messages_prompt as messages_prompt
from routing.router_request import router_options as router_options
from routing.router_request import tradeoff_parse as tradeoff_parse
from training import serving
from training.serving import (
    DEFAULT_OUTPUT_TOKENS,
    Router,
    RouterVersion,
    estimated_tokens,
    text_tokens,
)

logger = logging.getLogger(__name__)

PLATFORM_ORGANIZATION_SLUG = "routerhub-platform"
PLATFORM_ROUTER_SLUG = "auto"


@dataclass(frozen=True, slots=True)
class RouterRow:
    """What serving needs of a router, cached per process."""

    organization_id: int
    router_id: int
    slug: str
    candidates: tuple[str, ...]
    default_tradeoff: float
    version: RouterVersion | None  # unsaved copy with id, number, checksum and artifact paths
    bias: dict[str, float] = dataclasses.field(default_factory=dict)  # routing.calibration
    lifecycle: policy.ServingPolicy | None = None  # shadow, A/B challenger, exploration


@dataclass(frozen=True, slots=True)
class RankedChoice:
    model: str
    score: float | None
    expected_cost: float | None
    bias: float | None = None  # the feedback calibration added to ``score`` (None: none yet)


@dataclass(frozen=True)
class RouterDecision:
    router: str  # "router/<slug>"
    version: int | None
    ranked: list[RankedChoice]
    latency_ms: float
    strategy: str  # "trained" or "heuristic"
    router_id: int | None = None  # recorded on the usage record: feedback joins on it
    budget: dict[str, Any] | None = None  # routing.budget of a budget-aware key
    log: policy.DecisionLog | None = None  # what the decision log keeps (router_policy)

    @property
    def chosen(self) -> str:
        return self.ranked[0].model

    @property
    def models(self) -> list[str]:
        return [choice.model for choice in self.ranked]

    def restricted_to(self, servable: set[str]) -> RouterDecision:
        """The same decision ranking only ``servable`` models (those the gateway can call)."""
        return dataclasses.replace(self, ranked=[c for c in self.ranked if c.model in servable])

    def as_routing(self) -> dict[str, Any]:
        """The response's ``routing`` object of API.md."""
        routing = {
            "router": self.router,
            "version": self.version,
            "chosen": self.chosen,
            "strategy": self.strategy,
            "ranked": [_ranked_json(c) for c in self.ranked],
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.log is not None and self.log.explored:
            routing["explored"] = True
        return routing if self.budget is None else routing | {"budget": self.budget}


def _ranked_json(choice: RankedChoice) -> dict[str, Any]:
    ranked = {"model": choice.model, "score": choice.score, "expected_cost": choice.expected_cost}
    return ranked if choice.bias is None else ranked | {"bias": choice.bias}


# --- router rows, cached per process ----------------------------------------------------------

RowKey = tuple[int | None, str]  # (organization id, None = the platform; slug)
# Unknown slugs are cached too (None): the cache's bound holds under a flood of them.
_rows: TtlCache[RowKey, RouterRow | None] = TtlCache(lambda: settings.ROUTER_CACHE_TTL)


def router_cache_clear() -> None:
    _rows.clear()


def _load_row(organization_id: int | None, slug: str) -> RouterRow | None:
    routers = Router.objects.select_related(
        "active_version", "shadow_version", "challenger_version"
    )
    if organization_id is None:
        routers = routers.filter(organization__slug=PLATFORM_ORGANIZATION_SLUG)
    else:
        routers = routers.filter(organization_id=organization_id)
    router = routers.filter(slug=slug).first()
    if router is None:
        return None
    active = router.active_version
    return RouterRow(
        organization_id=router.organization_id,
        router_id=router.pk,
        slug=router.slug,
        candidates=tuple(router.candidates),
        default_tradeoff=router.default_tradeoff,
        version=policy.version_copy(active) if active is not None else None,
        lifecycle=policy.policy_of(router) if active is not None else None,
        bias={} if active is None else calibration_bias(router.pk, active.number),
    )


def router_row(organization_id: int | None, slug: str) -> RouterRow | None:
    """The router ``slug`` of an organization (``None`` = the platform), at most 0.5 s stale."""
    key = (organization_id, slug)
    cached = _rows.get(key)
    if cached is not MISS:
        return cached
    row = _load_row(organization_id, slug)
    _rows.put(key, row)
    return row


async def router_row_async(organization_id: int | None, slug: str) -> RouterRow | None:
    """``router_row`` for the event loop; the row's version is loaded (in a thread) when it is
    returned, so deciding with it reads no storage."""
    key = (organization_id, slug)
    cached = _rows.get(key)
    if cached is not MISS:
        refresh_ahead(_rows, key, lambda key: _ready(_load_row(*key)))
        return cached
    row = await sync_to_async(_load_row, thread_sensitive=False)(organization_id, slug)
    if row is not None and not policy.versions_loaded(policy.row_versions(row)):
        previous = _rows.get_stale(key)
        if (
            previous is not MISS
            and previous is not None
            and previous.version is not None
            and policy.versions_loaded(policy.row_versions(previous))
        ):
            # Activated elsewhere a moment ago: decide with the loaded version, not waiting.
            _rows.put(key, previous)
            _warm_soon(key, row)
            return previous
        await sync_to_async(policy.versions_load, thread_sensitive=False)(policy.row_versions(row))
    _rows.put(key, row)
    return row


# --- warm on activation --------------------------------------------------------------------------

_warming: dict[RowKey, asyncio.Task[None]] = {}
_ACTIVATION_CLOCK_SKEW = timedelta(seconds=5)  # activated_at comes from the activating host


def _ready(row: RouterRow | None) -> RouterRow | None:
    """``row`` with every version it may decide with loaded (``refresh_ahead``'s reload, then
    the cache stores it)."""
    policy.versions_load(policy.row_versions(row), warmup=True)
    return row


def _warm_row(key: RowKey, row: RouterRow) -> None:
    _rows.put(key, _ready(row))  # published only once deciding with it reads no storage


async def _warm(key: RowKey, row: RouterRow) -> None:
    try:
        await sync_to_async(_warm_row, thread_sensitive=False)(key, row)
    except Exception:
        logger.exception("router %s version could not be loaded ahead of its requests", key)
    finally:
        _warming.pop(key, None)


def _warm_soon(key: RowKey, row: RouterRow) -> None:
    if key not in _warming:
        _warming[key] = asyncio.get_running_loop().create_task(_warm(key, row))


def _warm_activated(since: datetime) -> datetime:
    """Load the versions activated after ``since`` of the routers this process serves, then
    publish their rows; returns the newest activation seen (the next ``since``)."""
    activated = Router.objects.filter(activated_at__gt=since - _ACTIVATION_CLOCK_SKEW).values_list(
        "organization_id", "organization__slug", "slug", "activated_at"
    )
    latest = since
    for organization_id, organization_slug, slug, activated_at in activated:
        latest = max(latest, activated_at or latest)  # never None here (filtered on it)
        key = (None if organization_slug == PLATFORM_ORGANIZATION_SLUG else organization_id, slug)
        cached = _rows.get_stale(key)
        if cached is MISS:
            continue  # not served here: its first request loads it, as any first request does
        row = _load_row(*key)
        if row is None or cached == row:
            continue  # already published (the overlap re-reads recent activations)
        try:
            _warm_row(key, row)
        except Exception:
            logger.exception("router %s version could not be loaded ahead of its requests", key)
    return latest


async def routers_watch_activations() -> None:
    """Every serving process, for its life: notice activations (by anyone, anywhere) within
    ``ROUTER_CACHE_TTL`` and load the new version before the cache hands it to a decision."""
    since = timezone.now()
    failing = False
    while True:
        await asyncio.sleep(max(settings.ROUTER_CACHE_TTL, 0.1))
        if not _rows:
            continue  # serves no router yet: nothing to keep warm
        try:
            since = await sync_to_async(_warm_activated, thread_sensitive=False)(since)
            failing = False
        except Exception:
            if not failing:  # once per outage, not twice a second
                logger.exception("could not check for router activations; retrying")
            failing = True


# --- decisions ---------------------------------------------------------------------------------


def _blended_prices(catalog: CatalogSnapshot, models: list[str], prompt: str) -> dict[str, float]:
    """USD per 1M tokens such that the predictor's expected cost is this prompt's input cost
    plus a typical completion at the cheapest endpoint's prices."""
    prompt_tokens = text_tokens(prompt)
    tokens = estimated_tokens(prompt)
    prices: dict[str, float] = {}
    for model in models:
        info = catalog.models.get(model)
        if info is None or not info.endpoints:
            continue
        cost = min(
            e.prices.prompt * Decimal(prompt_tokens) + e.prices.completion * DEFAULT_OUTPUT_TOKENS
            for e in info.endpoints
        )
        prices[model] = float(cost) / tokens * 1e6
    return prices


def _narrow(row_candidates: list[str], requested: list[str] | None, router: str) -> list[str]:
    if requested is None:
        return row_candidates
    unknown = [c for c in requested if c not in row_candidates]
    if unknown:
        raise InvalidInput(
            f"router.candidates must be among {router}'s candidates; unknown: {', '.join(unknown)}.",
            param="router.candidates",
            metadata={"candidates": row_candidates},
        )
    if not requested:
        raise InvalidInput("router.candidates must not be empty.", param="router.candidates")
    return requested


def _trained_decision(
    row: RouterRow,
    name: str,
    prompt: str,
    tradeoff: float,
    candidates: list[str],
    catalog: CatalogSnapshot | None,
    started: float,
) -> RouterDecision:
    assert row.version is not None
    version = policy.serving_version(row.version, row.lifecycle, row.router_id, prompt)
    predictor = serving.predictor_for_version(version)
    prices = _blended_prices(catalog, candidates, prompt) if catalog is not None else None
    bias = row.bias if version.number == row.version.number else {}  # learned on the active one
    ranked = predictor.rank(prompt, tradeoff, candidates, prices or None, bias or None)
    if not ranked:
        raise InvalidInput(
            f"None of the candidates were trained in {name} v{version.number}.",
            param="router.candidates",
        )
    serving.drift_sample_observe(row.version, prompt)
    return RouterDecision(
        router=name,
        version=version.number,
        ranked=[
            RankedChoice(r.model, r.score, r.expected_cost, bias.get(r.model, 0.0))
            if bias
            else RankedChoice(r.model, r.score, r.expected_cost)
            for r in ranked
        ],
        latency_ms=(time.perf_counter() - started) * 1000,
        strategy="trained",
        router_id=row.router_id,
        log=policy.decision_log_new(row, version, prompt, tradeoff, prices or None),
    )


def heuristic_decision(
    catalog: CatalogSnapshot,
    tradeoff: float,
    candidates: list[str] | None,
    prompt: str,
    started: float,
) -> RouterDecision:
    """``router/auto`` before it is trained: capability fit (the gateway's plan drops models that
    cannot serve the request), then price — dearest first when quality matters more."""
    pool: list[ModelInfo] = [
        info
        for model_id, info in catalog.models.items()
        if info.endpoints
        and not info.is_embedding  # a router answers chat; embedding models cannot
        and (candidates is None or model_id in candidates)
    ]
    if not pool:
        raise NotFound("router/auto has no catalog model to choose from.", param="model")
    prices = _blended_prices(catalog, [m.id for m in pool], prompt)
    tokens = estimated_tokens(prompt)
    ordered = sorted(pool, key=lambda m: prices[m.id], reverse=tradeoff < 0.5)
    return RouterDecision(
        router=f"router/{PLATFORM_ROUTER_SLUG}",
        version=None,
        ranked=[RankedChoice(m.id, None, prices[m.id] * tokens / 1e6) for m in ordered],
        latency_ms=(time.perf_counter() - started) * 1000,
        strategy="heuristic",
    )


def router_decide(
    *,
    organization_id: int,
    model_id: str,
    prompt: str,
    tradeoff: float | None,
    candidates: list[str] | None,
    catalog: CatalogSnapshot | None,
    row: RouterRow | None,
    budget: KeyBudget | None = None,
) -> RouterDecision:
    """Rank the router's candidates for ``prompt`` (``row`` from ``router_row``); a budget-aware
    key's ``budget`` moves the tradeoff toward cheaper models (``routing.budget``)."""
    started = time.perf_counter()
    slug = model_id.removeprefix("router/")
    is_platform = slug == PLATFORM_ROUTER_SLUG
    if row is None or row.version is None:
        if is_platform and catalog is not None:
            return _with_budget(
                lambda t: heuristic_decision(catalog, t, candidates, prompt, started),
                0.5 if tradeoff is None else tradeoff,
                budget,
            )
        if row is None:
            raise NotFound(
                f"No router '{model_id}' in this organization; GET /api/v1/routers lists them.",
                param="model",
                metadata={"model": model_id},
            )
        raise NotFound(
            f"Router '{model_id}' has no trained version yet; train it with "
            f"POST /api/v1/routers/{slug}/train.",
            param="model",
            metadata={"model": model_id},
        )
    chosen = _narrow(list(row.candidates), candidates, model_id)
    return _with_budget(
        lambda t: _trained_decision(row, model_id, prompt, t, chosen, catalog, started),
        row.default_tradeoff if tradeoff is None else tradeoff,
        budget,
    )


def _with_budget(
    decide: Callable[[float], RouterDecision], requested: float, budget: KeyBudget | None
) -> RouterDecision:
    """``decide`` at the requested tradeoff, or at the budget's effective one (and say so)."""
    if budget is None:
        return decide(requested)
    effective = budget.effective(requested)
    return dataclasses.replace(decide(effective), budget=budget.as_routing(requested, effective))


async def router_decide_async(
    *,
    organization_id: int,
    model_id: str,
    prompt: str,
    tradeoff: float | None,
    candidates: list[str] | None,
    catalog: CatalogSnapshot | None,
    budget: KeyBudget | None = None,
) -> RouterDecision:
    slug = model_id.removeprefix("router/")
    owner = None if slug == PLATFORM_ROUTER_SLUG else organization_id
    row = await router_row_async(owner, slug)
    # Loaded by router_row_async unless evicted since: ranking is ~1 ms of numpy, cheaper
    # inline than a thread hop, but a load reads storage and must not block the loop.
    if row is not None and not policy.versions_loaded(policy.row_versions(row)):
        await sync_to_async(policy.versions_load, thread_sensitive=False)(policy.row_versions(row))
    return router_decide(
        organization_id=organization_id,
        model_id=model_id,
        prompt=prompt,
        tradeoff=tradeoff,
        candidates=candidates,
        catalog=catalog,
        row=row,
        budget=budget,
    )
