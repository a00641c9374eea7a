"""Which credential a request uses for a provider: the organization's own key first, then ours.

BYOK keys are read for a whole organization at once, decrypted, and kept in process for a few
seconds (a deleted key stops being used within ``_TTL``); platform keys come from settings.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from asgiref.sync import sync_to_async
from django.conf import settings

from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead
from routing.models import ProviderKey
from routing.provider_secrets import InvalidToken, secret_decrypt

logger = logging.getLogger(__name__)

_TTL = 5.0


class OwnKey(NamedTuple):
    """An organization's credential for a provider, and its own host for it ("" = the provider's)."""

    secret: str
    base_url: str


_cache: TtlCache[int, dict[str, OwnKey]] = TtlCache(lambda: _TTL)


def byok_cache_clear() -> None:
    _cache.clear()


def _load(organization_id: int) -> dict[str, OwnKey]:
    keys: dict[str, OwnKey] = {}
    rows = ProviderKey.objects.filter(organization_id=organization_id).select_related("provider")
    for row in rows:
        try:
            keys[row.provider.slug] = OwnKey(secret_decrypt(row.encrypted_secret), row.base_url)
        except InvalidToken:
            logger.error(
                "provider key %s cannot be decrypted: was its encryption key dropped?", row.pk
            )
    return keys


async def byok_keys(organization_id: int) -> dict[str, OwnKey]:
    cached = _cache.get(organization_id)
    if cached is not MISS:
        refresh_ahead(_cache, organization_id, _load)
        return cached
    keys = await sync_to_async(_load, thread_sensitive=False)(organization_id)
    _cache.put(organization_id, keys)
    return keys


def platform_key(api_key_env: str) -> str | None:
    """The platform credential, ``""`` when the provider needs none, None when it is missing."""
    if not api_key_env:
        return ""
    return settings.PROVIDER_API_KEYS.get(api_key_env) or None
