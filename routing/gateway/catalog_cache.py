"""The catalog as immutable in-process objects, reloaded when ``CatalogRevision`` moves.

The gateway never queries the catalog per request: at most one indexed read of the revision
per process per ``CATALOG_CACHE_TTL`` (1 s), and a full reload only after a change; in a serving
process both happen in the background ahead of expiry (``routerhub.ttl_cache.refresh_ahead``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from billing.metering import TokenPrices
from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead
from routing.image_tokens import UNDESCRIBED, ImageTokens, image_rule
from routing.models import CatalogModel, CatalogRevision, Endpoint
from routing.providers import ADAPTERS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    id: int
    model_id: str
    provider_slug: str
    provider_name: str
    api_style: str
    base_url: str
    api_key_env: str
    options: dict[str, Any]
    upstream_model: str
    prices: TokenPrices
    context_length: int
    max_output: int
    supports_tools: bool
    supports_json: bool
    supports_structured_output: bool
    supports_vision: bool
    supports_streaming: bool
    supports_embeddings: bool
    supported_parameters: frozenset[str]
    is_simulated: bool
    content_kinds: frozenset[str] | None = None  # the adapter's (None: every kind)
    image_tokens: ImageTokens = UNDESCRIBED  # how the provider counts an image
    hidden_reasoning: bool = False  # bills reasoning it never streams (a cut stream: its time)
    output_tokens_per_second: int = 0  # 0: GATEWAY_REASONING_TOKENS_PER_SECOND


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    name: str
    author: str
    description: str
    context_length: int
    max_output: int
    is_simulated: bool
    endpoints: tuple[EndpointInfo, ...]
    is_embedding: bool = False  # served by /v1/embeddings only; chat never plans it
    categories: tuple[str, ...] = ()  # OpenRouter's use-case categories (catalog.toml)


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    revision: int
    models: dict[str, ModelInfo] = field(default_factory=dict)


def _supported_parameters(row: Endpoint) -> frozenset[str]:
    params = set(ADAPTERS[row.provider.api_style].supported_parameters)
    if not row.supports_tools:
        params -= {"tools", "tool_choice", "parallel_tool_calls"}
    if not (row.supports_json or row.supports_structured_output):
        params.discard("response_format")
    if not row.supports_streaming:
        params -= {"stream", "stream_options"}
    return frozenset(params)


def _endpoint_info(row: Endpoint) -> EndpointInfo:
    provider = row.provider
    return EndpointInfo(
        id=row.pk,
        model_id=row.model_id,
        provider_slug=provider.slug,
        provider_name=provider.name,
        api_style=provider.api_style,
        base_url=provider.base_url,
        api_key_env=provider.api_key_env,
        options=dict(provider.options or {}),
        upstream_model=row.upstream_model,
        prices=_prices(row),
        context_length=row.context_length,
        max_output=row.max_output,
        supports_tools=row.supports_tools,
        supports_json=row.supports_json,
        supports_structured_output=row.supports_structured_output,
        supports_vision=row.supports_vision,
        supports_streaming=row.supports_streaming,
        supports_embeddings=row.supports_embeddings,
        supported_parameters=_supported_parameters(row),
        is_simulated=provider.is_simulated,
        content_kinds=ADAPTERS[provider.api_style].content_kinds,
        image_tokens=_image_rule(row),
        hidden_reasoning=row.hidden_reasoning,
        output_tokens_per_second=row.output_tokens_per_second,
    )


def _prices(row: Endpoint) -> TokenPrices:
    """The endpoint's prices, with its long-context tier (``routing.services._long_context``'s
    form); a tier mistyped in admin is logged and left out."""
    base = TokenPrices(row.input_price, row.output_price, row.cached_input_price)
    tier = row.long_context or {}
    if not tier:
        return base
    try:
        cached = tier.get("cached_input")
        long = TokenPrices(
            Decimal(tier["input"]),
            Decimal(tier["output"]),
            None if cached is None else Decimal(cached),
        )
        return replace(base, long_context=long, long_context_threshold=int(tier["threshold"]))
    except (KeyError, TypeError, ValueError, ArithmeticError):
        logger.warning("endpoint %s: long_context %r is no price tier", row.pk, tier)
        return base


def _image_rule(row: Endpoint) -> ImageTokens:
    """The endpoint's image formula; one mistyped in admin holds as an undescribed one."""
    try:
        return image_rule(row.image_tokens)
    except ValueError:
        logger.warning("endpoint %s: image_tokens %r is no formula", row.pk, row.image_tokens)
        return UNDESCRIBED


def _revision() -> int:
    row = CatalogRevision.objects.filter(pk=1).values_list("revision", flat=True).first()
    return row or 0


def _load(revision: int) -> CatalogSnapshot:
    endpoints: dict[str, list[EndpointInfo]] = {}
    rows = Endpoint.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    for row in rows:
        endpoints.setdefault(row.model_id, []).append(_endpoint_info(row))
    models = {
        model.id: ModelInfo(
            id=model.id,
            name=model.name,
            author=model.author,
            description=model.description,
            context_length=model.context_length,
            max_output=model.max_output,
            is_simulated=model.is_simulated,
            endpoints=tuple(endpoints.get(model.id, ())),
            is_embedding=model.supports_embeddings,
            categories=tuple(model.categories or ()),
        )
        for model in CatalogModel.objects.filter(enabled=True)
    }
    return CatalogSnapshot(revision=revision, models=models)


# One entry (key None): the snapshot, fresh for CATALOG_CACHE_TTL; then its revision is checked.
_snapshots: TtlCache[None, CatalogSnapshot] = TtlCache(lambda: settings.CATALOG_CACHE_TTL)


def catalog_cache_clear() -> None:
    _snapshots.clear()


def _snapshot_current(_: None) -> CatalogSnapshot:
    """The cached snapshot if the revision has not moved, else a new one (a background reload)."""
    previous = _snapshots.get_stale(None)
    revision = _revision()
    if previous is not MISS and revision == previous.revision:
        return previous
    return _load(revision)


async def catalog_get() -> CatalogSnapshot:
    snapshot = _snapshots.get(None)
    if snapshot is not MISS:
        refresh_ahead(_snapshots, None, _snapshot_current)
        return snapshot
    previous = _snapshots.get_stale(None)
    if previous is not MISS:
        # Mark first: concurrent requests keep using the old snapshot while one of them checks.
        _snapshots.put(None, previous)
    revision = await sync_to_async(_revision, thread_sensitive=False)()
    if previous is not MISS and revision == previous.revision:
        return previous
    snapshot = await sync_to_async(_load, thread_sensitive=False)(revision)
    _snapshots.put(None, snapshot)
    return snapshot
