"""A request's ``provider`` preferences (OpenRouter's): read and checked, then applied to the
endpoints of the requested models by planning (``only``, ``ignore``, ``max_price``, ``order``,
``sort``, ``allow_fallbacks``).

A preference names a provider by its slug in any case (``fake-openai``) or by its name
(``"OpenAI"``, ``"Google AI Studio"``: OpenRouter's clients write names), the name compared as a
slug that keeps non-Latin letters (``"東京ホスト"``). A value that is the slug of a provider of the
requested models names that provider only, even where another provider's name reads the same; a
value with nothing left as a slug (``"!!"``) names no provider.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.text import slugify

from routerhub.errors import BadRequest
from routing.gateway import health
from routing.gateway.catalog_cache import EndpointInfo
from routing.providers.base import JSON

_PER_MILLION = Decimal(1_000_000)
_SORTS = ("price", "latency", "throughput")
# Each name is slugified (~7 µs): a 20 MB body of them was ~30 s of the event loop. OpenRouter
# has ~70 providers; a list naming more than this names some twice or none at all.
MAX_PROVIDER_NAMES = 128
# OpenRouter's provider filters that the catalog has no facts for: honouring them is impossible,
# dropping them would send the prompt where the client said not to, so asking is a 400.
_UNKNOWN_FACTS = {
    "data_collection": ("deny", "which providers retain or train on prompts"),
    "zdr": (True, "which providers keep zero data"),
    "enforce_distillable_text": (True, "which models' licences allow distillation"),
}


def preferences_read(body: JSON) -> JSON:
    """``body``'s ``provider`` object, refused with a 400 naming the field when malformed or
    asking for what RouterHub cannot honour."""
    prefs = body.get("provider") or {}
    if not isinstance(prefs, dict):
        raise BadRequest("provider must be an object.", param="provider")
    sort = prefs.get("sort")
    if sort is not None and sort not in _SORTS:
        raise BadRequest(
            f"provider.sort must be one of {', '.join(_SORTS)}.", param="provider.sort"
        )
    for name in ("order", "only", "ignore"):
        if prefs.get(name) is not None and not isinstance(prefs[name], list):
            raise BadRequest(
                f"provider.{name} must be a list of provider slugs.", param=f"provider.{name}"
            )
        if len(prefs.get(name) or ()) > MAX_PROVIDER_NAMES:
            raise BadRequest(
                f"provider.{name} may name at most {MAX_PROVIDER_NAMES} providers.",
                param=f"provider.{name}",
            )
    _max_price_check(prefs.get("max_price"))
    _unhonoured_check(prefs)
    return prefs


def _unhonoured_check(prefs: JSON) -> None:
    for name, (value, facts) in _UNKNOWN_FACTS.items():
        if prefs.get(name) == value:
            raise BadRequest(
                f"provider.{name} {value!r} cannot be honoured: RouterHub's catalog does not "
                f"record {facts}. Leave it out and choose providers with provider.only.",
                param=f"provider.{name}",
            )
    if prefs.get("quantizations"):
        raise BadRequest(
            "provider.quantizations cannot be honoured: every endpoint here is a provider's "
            "own API and the catalog records no quantization. Leave it out.",
            param="provider.quantizations",
        )


def _max_price_check(max_price: Any) -> None:
    if max_price is None:
        return
    if not isinstance(max_price, dict):
        raise BadRequest(
            "provider.max_price must be an object {prompt, completion} in USD per 1M tokens.",
            param="provider.max_price",
        )
    for name in sorted(set(max_price) - {"prompt", "completion"}):
        if max_price[name] is not None:
            raise BadRequest(
                f"provider.max_price.{name[:40]} cannot be honoured: RouterHub prices tokens "
                "only; give prompt and completion (USD per 1M tokens).",
                param=f"provider.max_price.{name[:40]}",
            )
    for name in ("prompt", "completion"):
        value = max_price.get(name)
        if value is None:
            continue
        try:
            price = Decimal(str(value))
        except InvalidOperation:
            price = Decimal("NaN")
        if isinstance(value, bool) or not price.is_finite() or price < 0:
            raise BadRequest(
                f"provider.max_price.{name} must be a non-negative number (USD per 1M tokens).",
                param=f"provider.max_price.{name}",
            )


def within_max_price(endpoint: EndpointInfo, max_price: Any, prompt_bound: int = 0) -> bool:
    """Whether ``endpoint``'s prices for this prompt (its long-context tier when the prompt's
    bound is over the threshold, as the hold prices it) are within ``provider.max_price``."""
    if not isinstance(max_price, dict):
        return True
    prices = endpoint.prices.at(prompt_bound)
    for name, price in (("prompt", prices.prompt), ("completion", prices.completion)):
        limit = max_price.get(name)
        if limit is not None and price * _PER_MILLION > Decimal(str(limit)):
            return False
    return True


def endpoint_sort_key(endpoint: EndpointInfo, sort: str | None, prompt_bound: int = 0) -> Any:
    """Sorted by price at the prompt's tier (``within_max_price``), or by health first."""
    prices = endpoint.prices.at(prompt_bound)
    price = prices.prompt + prices.completion
    if sort == "latency":
        return (health.latency_ms(endpoint.id), price)
    if sort == "throughput":
        return (-health.throughput(endpoint.id), price)
    return (price, health.latency_ms(endpoint.id))


def provider_keys(endpoint: EndpointInfo) -> frozenset[str]:
    """What a preference may call an endpoint's provider: its slug, and its name as a slug (none
    when nothing is left of it)."""
    name = slugify(endpoint.provider_name, allow_unicode=True)
    slug = f"slug:{endpoint.provider_slug.lower()}"
    return frozenset({slug, f"name:{name}"} if name else {slug})


def providers_named(values: Any, slugs: set[str]) -> list[str]:
    """The providers a preference list names, in its order, as ``provider_keys`` writes them:
    a value that is one of ``slugs`` (the requested models' providers', lower case) names that
    provider by slug, any other value names providers by name; a value naming nothing is left
    out."""
    keys = []
    for value in values or []:
        text = str(value)
        if text.lower() in slugs:
            keys.append(f"slug:{text.lower()}")
        elif name := slugify(text, allow_unicode=True):
            keys.append(f"name:{name}")
    return keys


def endpoints_ordered(
    endpoints: list[EndpointInfo], prefs: JSON, order: list[str], prompt_bound: int = 0
) -> list[EndpointInfo]:
    """``endpoints`` in ``provider.sort``'s order, the providers ``order`` (``provider.order``
    read by ``providers_named``) names first; with ``allow_fallbacks`` false, only those (or
    only the first, without an order)."""
    ranked = sorted(endpoints, key=lambda e: endpoint_sort_key(e, prefs.get("sort"), prompt_bound))
    if prefs.get("order"):
        position = {key: i for i, key in reversed(list(enumerate(order)))}
        place = {e.id: min(position.get(k, len(order)) for k in provider_keys(e)) for e in ranked}
        ranked.sort(key=lambda e: place[e.id])
        if prefs.get("allow_fallbacks") is False:
            ranked = [e for e in ranked if place[e.id] < len(order)]
    elif prefs.get("allow_fallbacks") is False:
        ranked = ranked[:1]
    return ranked
