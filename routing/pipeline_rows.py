"""A pipeline's active version as serving reads it (``model: "pipeline/<slug>"``), cached per
process like router rows (``routing.routers``): for ``PIPELINE_CACHE_TTL`` (0.5 s), reloaded
ahead of expiry under steady traffic (``routerhub.ttl_cache.refresh_ahead``), so a warm request
reads no pipeline row from PostgreSQL.

A change (create, new version, delete) reaches every worker within ``PIPELINE_CACHE_TTL``, as an
activation reaches routers within ``ROUTER_CACHE_TTL``; the process that commits it empties its
own cache then (``pipeline_rows_changed``), so its next request already serves it. Routers need an
activation watcher beside the TTL because a new version's artifacts take a while to load; a
pipeline version is one small row, read on the first request after expiry.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from routerhub.ttl_cache import MISS, TtlCache, refresh_ahead
from routing.models import Pipeline, PipelineVersion

RowKey = tuple[int, str]  # (organization id, slug)
# The active version, None for no such pipeline (cached too: the bound holds under a flood of
# unknown slugs) or one without a version. Shared by concurrent requests: read, never changed.
_rows: TtlCache[RowKey, PipelineVersion | None] = TtlCache(lambda: settings.PIPELINE_CACHE_TTL)


def pipeline_cache_clear() -> None:
    _rows.clear()


def pipeline_rows_changed() -> None:
    """Call in the transaction that creates, versions or deletes a pipeline: this process's cache
    is emptied when it commits (other processes' entries expire within the TTL)."""
    transaction.on_commit(pipeline_cache_clear)


def _load(key: RowKey) -> PipelineVersion | None:
    organization_id, slug = key
    pipeline = (
        Pipeline.objects.select_related("active_version")
        .filter(organization_id=organization_id, slug=slug)
        .first()
    )
    return None if pipeline is None else pipeline.active_version


async def pipeline_version_async(organization_id: int, slug: str) -> PipelineVersion | None:
    """The active version of the organization's pipeline ``slug`` (None: no such pipeline, or
    none active), at most ``PIPELINE_CACHE_TTL`` stale; a cache hit reads no storage."""
    key = (organization_id, slug)
    cached = _rows.get(key)
    if cached is not MISS:
        refresh_ahead(_rows, key, _load)
        return cached
    generation = _rows.generation  # a change committed during the load clears, and wins
    version = await sync_to_async(_load, thread_sensitive=False)(key)
    _rows.put(key, version, generation=generation)
    return version
