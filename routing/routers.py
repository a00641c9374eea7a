"""Serving routers: ``router/<slug>`` and ``router/auto`` rank catalog models for each prompt.

A decision featurizes the prompt once, scores every candidate with the router's active version
(``training.serving``, loaded once per process and kept in memory) and orders them by
``score - λ·cost`` at the requested tradeoff (``routing.router_ranking``); the gateway calls the
first and falls back down the ranking. This module finds the router's row and picks the ranking.
Router rows are cached per process for ``ROUTER_CACHE_TTL`` (0.5 s): an activation or
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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Exists, OuterRef
from django.utils import timezone

from accounts.models import PLATFORM_ORGANIZATION_SLUG as PLATFORM_ORGANIZATION_SLUG
from accounts.models import Membership
from routerhub.domain import InvalidInput, NotFound
from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead
from routing import router_policy as policy
from routing.budget import KeyBudget
from routing.calibration import calibration_bias
from routing.gateway.catalog_cache import CatalogSnapshot
from routing.router_ranking import PLATFORM_ROUTER_SLUG as PLATFORM_ROUTER_SLUG
from routing.router_ranking import RankedChoice as RankedChoice
from routing.router_ranking import RouterDecision as RouterDecision
from routing.router_ranking import heuristic_decision, trained_decision
from routing.router_request import TRADEOFF_NAMES as TRADEOFF_NAMES
from routing.router_request import messages_prompt as messages_prompt
from routing.router_request import router_options as router_options
from routing.router_request import router_task as router_task
from routing.router_request import tradeoff_parse as tradeoff_parse
from training.serving import Router, RouterVersion

logger = logging.getLogger(__name__)


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
        # Never an organization of people: one that took the slug before it was reserved.
        routers = routers.filter(
            organization__slug=PLATFORM_ORGANIZATION_SLUG, organization__memberships__isnull=True
        )
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
    people = Membership.objects.filter(organization_id=OuterRef("organization_id"))
    activated = (
        Router.objects.filter(activated_at__gt=since - _ACTIVATION_CLOCK_SKEW)
        .annotate(has_people=Exists(people))
        .values_list("organization_id", "organization__slug", "has_people", "slug", "activated_at")
    )
    latest = since
    for organization_id, organization_slug, has_people, slug, activated_at in activated:
        latest = max(latest, activated_at or latest)  # never None here (filtered on it)
        # The platform's as ``_load_row`` finds it: never an organization of people holding its slug.
        platform = organization_slug == PLATFORM_ORGANIZATION_SLUG and not has_people
        key = (None if platform else organization_id, slug)
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


def _narrow(
    row_candidates: list[str], requested: list[str] | None, router: str, param: str
) -> list[str]:
    if requested is None:
        return row_candidates
    unknown = [c for c in requested if c not in row_candidates]
    if unknown:
        raise InvalidInput(
            f"{param} must be among {router}'s candidates; unknown: {', '.join(unknown)}.",
            param=param,
            metadata={"candidates": row_candidates},
        )
    if not requested:
        raise InvalidInput(f"{param} must not be empty.", param=param)
    return requested


def router_candidates_allowed(
    allowed_models: Collection[str], model_id: str, row: RouterRow | None
) -> frozenset[str]:
    """The candidates a key restricted to ``allowed_models`` may name for ``model_id``
    (``router/<slug>``, ``row`` from ``router_row``) beyond its own allow-list: the router's
    configured candidates, which it may pick unasked, when the key may use the router; else
    none. An untrained router has none, row or not: untrained ``router/auto`` ranks the whole
    catalog (``router_decide``), even when a failed first training left its row, and narrowing
    it would let a key allowed only ``router/auto`` call any catalog model by name."""
    if model_id not in allowed_models or row is None or row.version is None:
        return frozenset()
    return frozenset(row.candidates)


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
    candidates_param: str = "router.candidates",
    task: str | None = None,
) -> RouterDecision:
    """Rank the router's candidates for ``prompt`` (``row`` from ``router_row``); a budget-aware
    key's ``budget`` moves the tradeoff toward cheaper models (``routing.budget``).
    ``candidates_param`` is the request field that named ``candidates``, for errors; ``task``
    is the request's task hint (``router_ranking.trained_decision``)."""
    started = time.perf_counter()
    slug = model_id.removeprefix("router/")
    is_platform = slug == PLATFORM_ROUTER_SLUG
    if row is None or row.version is None:
        if is_platform and catalog is not None:
            return _with_budget(
                lambda t: heuristic_decision(catalog, t, candidates, prompt, started, task),
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
    chosen = _narrow(list(row.candidates), candidates, model_id, candidates_param)
    return _with_budget(
        lambda t: trained_decision(row, model_id, prompt, t, chosen, catalog, started, task),
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
    candidates_param: str = "router.candidates",
    task: str | None = None,
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
        candidates_param=candidates_param,
        task=task,
    )
