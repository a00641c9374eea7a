"""What names a router by its slug, outside the router: keys' ``allowed_models``
(``router/<slug>`` or a RouteLLM name of it) and pipelines' active versions (a step's
``router/<slug>`` model or its ``router_score`` pre-gate). A rename or a delete is a 409 naming
them: a router made later with the same slug would silently be theirs."""

from __future__ import annotations

from django.apps import apps
from django.db.models import Q

from accounts.models import ApiKey
from routerhub.domain import Conflict
from routerhub.router_names import names_router
from training.models import Router

NAMED_MAX = 10


def _keys_naming(router: Router) -> list[dict[str, str]]:
    """The keys (prefix and name, at most ``NAMED_MAX`` + 1) not revoked whose ``allowed_models``
    name ``router``: ``router/<slug>`` or a RouteLLM name of it (``routerhub.router_names``).
    Expired keys count (an expiry can be extended)."""
    slug = router.slug
    # The database narrows to keys whose list holds the exact name or text like a RouteLLM
    # name's start (case-insensitively, and ``router-a-b-0.5`` names ``a-b``, not ``a``):
    # each is then read as the gateway reads it.
    named = Q(allowed_models__contains=[f"router/{slug}"]) | Q(
        allowed_models__icontains=f'"router-{slug}-'
    )
    rows = (
        ApiKey.objects.filter(organization_id=router.organization_id, revoked_at__isnull=True)
        .filter(named)
        .order_by("pk")
        .values_list("prefix", "name", "allowed_models")
    )
    keys: list[dict[str, str]] = []
    for prefix, name, allowed in rows.iterator(chunk_size=100):
        if any(isinstance(m, str) and names_router(m, slug) for m in allowed or ()):
            keys.append({"prefix": prefix, "name": name})
            if len(keys) > NAMED_MAX:
                break
    return keys


def _pipelines_naming(router: Router) -> list[dict[str, str]]:
    """The pipelines (slug and name, at most ``NAMED_MAX`` + 1) whose active version, the one
    served (a new version replaces it; none is activated again), calls ``router``: a step's
    ``model`` or its pre-gate's ``router`` (``routing.pipeline_spec``)."""
    # By name, not by import: routing reaches training (``training.serving``), not the reverse.
    pipeline_model = apps.get_model("routing", "Pipeline")
    steps = "active_version__steps__contains"
    named = Q(**{steps: [{"model": f"router/{router.slug}"}]}) | Q(
        **{steps: [{"pre_gate": {"router": router.slug}}]}
    )
    rows = pipeline_model.objects.filter(organization_id=router.organization_id).filter(named)
    named_rows = rows.order_by("pk").values_list("slug", "name")[: NAMED_MAX + 1]
    return [{"slug": slug, "name": name} for slug, name in named_rows]


def _listed(labels: list[str]) -> str:
    return ", ".join(labels[:NAMED_MAX]) + (" and more" if len(labels) > NAMED_MAX else "")


def router_references_check(router: Router, *, action: str, outcome: str) -> None:
    """409 (``param`` slug; ``metadata.keys`` ``[{prefix, name}]`` and ``metadata.pipelines``
    ``[{slug, name}]``, at most ``NAMED_MAX`` each) while keys or pipelines name ``router``,
    before ``action``: what was given a router never gets one made later with the same slug."""
    keys, pipelines = _keys_naming(router), _pipelines_naming(router)
    if not keys and not pipelines:
        return
    slug, found = router.slug, []
    if keys:
        named = _listed([f"{key['prefix']}… ({key['name']})" for key in keys])
        found.append(
            f"Keys allowed router/{slug} (or router-{slug}-<threshold>) {outcome}: {named}. "
            "Change their allowed_models, or revoke them"
        )
    if pipelines:
        named = _listed([f"{row['slug']} ({row['name']})" for row in pipelines])
        found.append(
            f"Pipelines whose active version calls router/{slug} {outcome}: {named}. Give them "
            "a version without it, or delete them"
        )
    raise Conflict(
        f"{'. '.join(found)}, before {action} the router.",
        param="slug",
        metadata={"keys": keys[:NAMED_MAX], "pipelines": pipelines[:NAMED_MAX]},
    )
