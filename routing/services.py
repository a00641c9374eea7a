"""Writes for routing: syncing the catalog from its data file, and bring-your-own provider keys."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import F

from accounts.models import Organization, User
from routerhub.domain import InvalidInput
from routing.egress import base_url_check
from routing.image_tokens import image_rule
from routing.models import (
    MODEL_CATEGORIES,
    ApiStyle,
    CatalogModel,
    CatalogRevision,
    Endpoint,
    Provider,
    ProviderKey,
    long_context_problem,
)
from routing.provider_secrets import secret_encrypt, secret_reencrypt

logger = logging.getLogger(__name__)

CATALOG_FILE = Path(__file__).resolve().parent / "catalog.toml"
CAPABILITIES = ("tools", "json", "structured_output", "vision", "streaming", "embeddings")
_PER_MILLION = Decimal(1_000_000)


def catalog_revision_bump() -> None:
    """Tell every gateway process (within a second) that the catalog changed."""
    updated = CatalogRevision.objects.filter(pk=1).update(revision=F("revision") + 1)
    if not updated:
        CatalogRevision.objects.get_or_create(pk=1, defaults={"revision": 1})


def _capability_fields(capabilities: list[str]) -> dict[str, bool]:
    unknown = set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")
    return {f"supports_{name}": name in capabilities for name in CAPABILITIES}


def _categories(model_id: str, categories: list[str]) -> list[str]:
    unknown = set(categories) - set(MODEL_CATEGORIES)
    if unknown:
        raise ValueError(f"{model_id}: unknown categories {sorted(unknown)}")
    return list(categories)


def _per_token(per_million: str | float) -> Decimal:
    return Decimal(str(per_million)) / _PER_MILLION


@dataclass(frozen=True)
class CatalogSyncResult:
    providers: int
    models: int
    endpoints: int


@transaction.atomic
def catalog_sync(*, data: dict[str, Any]) -> CatalogSyncResult:
    """Create or update the providers, models and endpoints described by ``data`` (idempotent).

    Rows absent from ``data`` are left alone so additions made in admin survive a sync.
    """
    providers = {item["slug"]: _provider_sync(item) for item in data.get("providers", [])}
    models = {item["id"]: _model_sync(item) for item in data.get("models", [])}
    metering = {item["id"]: _metering_fields(item) for item in data.get("models", [])}
    endpoints = 0
    for item in data.get("endpoints", []):
        model = models.get(item["model"]) or CatalogModel.objects.get(pk=item["model"])
        provider = providers.get(item["provider"]) or Provider.objects.get(slug=item["provider"])
        own = metering.get(item["model"], {}) | _metering_fields(item)  # the endpoint's wins
        _endpoint_sync(item | own, provider, model)
        endpoints += 1
    catalog_revision_bump()
    return CatalogSyncResult(len(providers), len(models), endpoints)


def _provider_sync(item: dict[str, Any]) -> Provider:
    provider, _ = Provider.objects.update_or_create(
        slug=item["slug"],
        defaults={
            "name": item["name"],
            "api_style": item["api_style"],
            "base_url": item["base_url"],
            "api_key_env": item.get("api_key_env", ""),
            "options": item.get("options", {}),
            "is_simulated": item.get("is_simulated", False),
            "enabled": item.get("enabled", True),
        },
    )
    return provider


def _model_sync(item: dict[str, Any]) -> CatalogModel:
    model, _ = CatalogModel.objects.update_or_create(
        id=item["id"],
        defaults={
            "name": item["name"],
            "author": item["author"],
            "description": item.get("description", ""),
            "context_length": item["context_length"],
            "max_output": item["max_output"],
            "is_simulated": item.get("is_simulated", False),
            "enabled": item.get("enabled", True),
            **_capability_fields(item.get("capabilities", [])),
            "categories": _categories(item["id"], item.get("categories", [])),
        },
    )
    return model


_METERING = ("image_tokens", "hidden_reasoning", "output_tokens_per_second")
_SPEED_MOST = 32767  # output_tokens_per_second's SmallIntegerField


def _metering_fields(item: dict[str, Any]) -> dict[str, Any]:
    """What prices a model's images and its cut streams, as its entry (or an endpoint's) gives
    it; an endpoint's own values win over its model's."""
    fields = {name: item[name] for name in _METERING if name in item}
    image_rule(fields.get("image_tokens"))  # ValueError for a description that is no formula
    speed = fields.get("output_tokens_per_second", 0)
    # A smallint column: a larger value failed the sync with a database error, not this one.
    if isinstance(speed, bool) or not isinstance(speed, int) or not 0 <= speed <= _SPEED_MOST:
        raise ValueError(
            f"{item.get('id') or item.get('model')}: output_tokens_per_second {speed!r} must be "
            f"an integer from 0 to {_SPEED_MOST}"
        )
    return fields


def _endpoint_sync(item: dict[str, Any], provider: Provider, model: CatalogModel) -> None:
    """One endpoint; capabilities it does not list are its model's; image formula, hidden
    reasoning and output speed its model's entry's unless it gives its own."""
    capabilities = item.get("capabilities")
    checked = item.get("checked")
    Endpoint.objects.update_or_create(
        provider=provider,
        model=model,
        defaults={
            "upstream_model": item["upstream_model"],
            "input_price": _per_token(item["input"]),
            "cached_input_price": (
                None if item.get("cached_input") is None else _per_token(item["cached_input"])
            ),
            "output_price": _per_token(item["output"]),
            "context_length": item.get("context_length", model.context_length),
            "max_output": item.get("max_output", model.max_output),
            "price_source": item.get("source", ""),
            "price_checked": date.fromisoformat(str(checked)) if checked else None,
            "enabled": item.get("enabled", True),
            "image_tokens": item.get("image_tokens", {}),
            "hidden_reasoning": item.get("hidden_reasoning", False),
            "output_tokens_per_second": item.get("output_tokens_per_second", 0),
            "long_context": _long_context(item),
            **(
                _capability_fields(capabilities)
                if capabilities is not None
                else {f"supports_{n}": getattr(model, f"supports_{n}") for n in CAPABILITIES}
            ),
        },
    )


def _long_context(item: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's long-context tier (``{threshold, input, output, cached_input}``, USD per
    1M tokens in the file) stored per token, as its other prices; {} when it has none."""
    tier = item.get("long_context")
    if tier is None or tier == {}:
        return {}
    problem = long_context_problem(tier, cached=item.get("cached_input") is not None)
    if problem is not None:
        raise ValueError(f"{item['model']}: {problem}")
    prices = {n: str(_per_token(tier[n])) for n in ("input", "output", "cached_input") if n in tier}
    return {"threshold": tier["threshold"], **prices}


def catalog_sync_file(*, path: Path = CATALOG_FILE) -> CatalogSyncResult:
    with path.open("rb") as handle:
        return catalog_sync(data=tomllib.load(handle))


def provider_key_create(
    *,
    organization: Organization,
    provider: Provider,
    secret: str,
    name: str = "",
    base_url: str = "",
    created_by: User | None = None,
) -> ProviderKey:
    """Store (or replace) the organization's key for ``provider``, encrypted; ``base_url``
    (OpenAI-compatible providers only) sends the organization's requests to its own host."""
    secret = secret.strip()
    if len(secret) < 8:
        raise InvalidInput("The provider key looks too short.", param="secret")
    if base_url.strip():
        if provider.api_style != ApiStyle.OPENAI:
            raise InvalidInput(
                "base_url is only for OpenAI-compatible providers.", param="base_url"
            )
        base_url = base_url_check(base_url, tenant=organization.pk)
    key, _ = ProviderKey.objects.update_or_create(
        organization=organization,
        provider=provider,
        defaults={
            "name": name,
            "base_url": base_url.strip(),
            "encrypted_secret": secret_encrypt(secret),
            "last4": secret[-4:],
            "created_by": created_by,
        },
    )
    return key


def provider_key_delete(*, key: ProviderKey) -> None:
    key.delete()


def provider_keys_reencrypt() -> int:
    """Re-encrypt every stored provider key under the newest encryption key; returns the count."""
    count = 0
    for key in ProviderKey.objects.only("pk", "encrypted_secret").iterator():
        ProviderKey.objects.filter(pk=key.pk).update(
            encrypted_secret=secret_reencrypt(bytes(key.encrypted_secret))
        )
        count += 1
    return count
