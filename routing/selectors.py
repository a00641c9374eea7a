"""Reads of the catalog for people (the gateway uses its in-process snapshot instead)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Prefetch, Q

from routing.gateway.credentials import platform_key
from routing.models import CatalogModel, Endpoint, ProviderKey
from routing.services import CAPABILITIES

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class EndpointRow:
    provider: str
    provider_name: str
    input_per_million: Decimal
    cached_per_million: Decimal | None
    output_per_million: Decimal
    context_length: int
    max_output: int
    price_source: str
    simulated: bool


@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    author: str
    context_length: int
    capabilities: list[str]
    simulated: bool
    endpoints: list[EndpointRow]

    @property
    def cheapest(self) -> EndpointRow | None:
        return self.endpoints[0] if self.endpoints else None


def _per_million(value: Decimal) -> Decimal:
    return (value * _MILLION).normalize()


def catalog_models_list(*, query: str = "") -> list[ModelRow]:
    """Enabled models with their enabled endpoints, cheapest first; ``query`` matches id or name."""
    endpoints = Endpoint.objects.filter(enabled=True, provider__enabled=True).select_related(
        "provider"
    )
    models = CatalogModel.objects.filter(enabled=True).prefetch_related(
        Prefetch("endpoints", queryset=endpoints)
    )
    if query:
        models = models.filter(
            Q(id__icontains=query) | Q(name__icontains=query) | Q(author__icontains=query)
        )
    rows = []
    for model in models.order_by("id"):
        served = sorted(
            model.endpoints.all(), key=lambda e: (e.input_price + e.output_price, e.provider.slug)
        )
        if not served:
            continue
        capabilities = [name for name in CAPABILITIES if getattr(model, f"supports_{name}")]
        rows.append(
            ModelRow(
                id=model.id,
                name=model.name,
                author=model.author,
                context_length=model.context_length,
                capabilities=capabilities,
                simulated=model.is_simulated,
                endpoints=[
                    EndpointRow(
                        provider=e.provider.slug,
                        provider_name=e.provider.name,
                        input_per_million=_per_million(e.input_price),
                        cached_per_million=None
                        if e.cached_input_price is None
                        else _per_million(e.cached_input_price),
                        output_per_million=_per_million(e.output_price),
                        context_length=e.context_length,
                        max_output=e.max_output,
                        price_source=e.price_source,
                        simulated=e.provider.is_simulated,
                    )
                    for e in served
                ],
            )
        )
    return rows


def models_callable_by(*, organization_id: int) -> set[str]:
    """Ids of the models this organization can call now: some enabled endpoint has a provider
    that needs no key, whose platform key is configured, or for which it brought its own key."""
    own = set(
        ProviderKey.objects.filter(organization_id=organization_id).values_list(
            "provider_id", flat=True
        )
    )
    endpoints = Endpoint.objects.filter(
        enabled=True, provider__enabled=True, model__enabled=True
    ).values_list("model_id", "provider_id", "provider__api_key_env")
    return {
        model_id
        for model_id, provider_id, key_env in endpoints
        if provider_id in own or platform_key(key_env) is not None
    }


def catalog_unknown_ids(model_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each id that is not an enabled catalog model, with up to three similar catalog ids.

    A router over such ids trains, but its requests cannot be served (503): its candidates
    must be the ids of ``GET /v1/models``.
    """
    known = list(CatalogModel.objects.filter(enabled=True).values_list("id", flat=True))
    by_name = {model_id.split("/", 1)[-1]: model_id for model_id in known}
    unknown: dict[str, list[str]] = {}
    for model_id in dict.fromkeys(model_ids):
        if model_id in by_name.values():
            continue
        close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.5)
        name = model_id.split("/", 1)[-1]
        close += [
            by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5)
        ]
        unknown[model_id] = list(dict.fromkeys(close))[:3]
    return unknown


def catalog_model_ids() -> list[str]:
    """Every enabled catalog model id, for pickers (the dataset column-mapping UI)."""
    return list(
        CatalogModel.objects.filter(enabled=True).order_by("id").values_list("id", flat=True)
    )
