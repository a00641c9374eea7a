"""The model names a trained router is served by: ``router/<slug>`` and RouteLLM's
``router-<slug>-<threshold>`` (or ``-<P>%``).

Here, outside both apps, because routing serves the names (``routing.routellm``) and training
guards a router's slug against the keys whose ``allowed_models`` name it
(``training.services``): training importing routing would make a cycle.
"""

from __future__ import annotations

import re

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
