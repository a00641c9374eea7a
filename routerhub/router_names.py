"""The model names a trained router is served by: ``router/<slug>`` and RouteLLM's
``router-<slug>-<threshold>`` (or ``-<P>%``).

Here, outside both apps, because routing serves the names (``routing.routellm``) and training
guards a router's slug against the keys whose ``allowed_models`` name it
(``training.services``): training importing routing would make a cycle. The writes of those
names lock the routers they name (``routers_named_lock``), so a delete cannot miss a write
still committing (a write after the delete names a slug with no router, as any may).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.apps import apps
from django.db import connection

ROUTELLM_MODEL_NAME = re.compile(
    r"router-(?P<slug>[-a-zA-Z0-9_]+)-(?P<threshold>[0-9]*\.?[0-9]+(?:[eE]-?[0-9]+)?)(?P<pct>%)?"
)
ROUTELLM_MODEL_NAME_MAX = 80  # UsageRecord.router's width


def routellm_slug(model: str) -> str | None:
    """The router slug a RouteLLM name ``router-<slug>-<threshold>`` (or ``-<P>%``) names, its
    threshold unchecked; ``None`` for any other name."""
    match = ROUTELLM_MODEL_NAME.fullmatch(model)
    return None if match is None else match["slug"]


def names_router(model: str, slug: str) -> bool:
    """Whether ``model`` (an ``allowed_models`` entry, a request's model) names router ``slug``:
    ``router/<slug>``, or a RouteLLM name of it with any threshold."""
    return model == f"router/{slug}" or routellm_slug(model) == slug


def router_slugs_named(names: Iterable[object]) -> set[str]:
    """The router slugs ``names`` (``allowed_models`` entries, pipeline steps' models) name."""
    slugs = set()
    for name in names:
        if isinstance(name, str):
            slug = name.removeprefix("router/") if name.startswith("router/") else None
            slug = slug or routellm_slug(name)
            if slug:
                slugs.add(slug)
    return slugs


def routers_named_lock(organization_id: int, names: Iterable[object]) -> None:
    """Lock the organization's routers ``names`` name (``FOR SHARE``, in id order) until the
    caller's transaction ends; call it in the transaction that writes the names. A router's
    delete or rename locks its row (``FOR UPDATE``) and then looks for the keys and pipelines
    naming it (``training.router_references``): one that comes later waits for this write to
    commit and sees it. One that came first has deleted or renamed the row: this write then
    commits naming a slug with no router, as any key may, and a router made later with that
    slug is what they name. SQLite has no row locks (a write locks the database)."""
    slugs = sorted(router_slugs_named(names))
    if not slugs:
        return
    table = apps.get_model("training", "Router")._meta.db_table
    lock = " FOR SHARE" if connection.features.has_select_for_update else ""
    marks = ", ".join(["%s"] * len(slugs))
    sql = (
        f"SELECT id FROM {table} WHERE organization_id = %s AND slug IN ({marks})"  # noqa: S608
        f" ORDER BY id{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization_id, *slugs])
        cursor.fetchall()
