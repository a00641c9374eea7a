"""A router's lifecycle: its experiment settings (shadow version, A/B challenger, exploration,
promotion rule), promotions, rollbacks and the audit log of every change of serving version.

Every entry of the audit log goes through ``router_event_record``: the one place a lifecycle
event is recorded (and the place to notify anyone of it).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from routerhub.domain import Conflict, InvalidInput, NotFound
from training import services
from training.models import Promotion, Router, RouterEvent, RouterEventKind, RouterVersion
from webhooks.models import WebhookEvent
from webhooks.services import webhook_event_emit

logger = logging.getLogger(__name__)

RULE_ACTOR = "rule:promotion"  # the actor of automatic promotions
LIFECYCLE_FIELDS = (
    "shadow_version",
    "shadow_share",
    "challenger_version",
    "challenger_share",
    "exploration_rate",
    "promotion",
    "promotion_min_decisions",
)


def router_event_record(
    *,
    router: Router,
    kind: str,
    actor: str,
    from_version: int | None = None,
    to_version: int | None = None,
    evidence: dict[str, Any] | None = None,
) -> RouterEvent:
    """Record a lifecycle event of ``router`` in its audit log (who or what, when, from which
    version to which, on what evidence)."""
    event = RouterEvent.objects.create(
        organization_id=router.organization_id,
        router=router,
        kind=kind,
        actor=actor[:200],
        from_version=from_version,
        to_version=to_version,
        evidence=evidence or {},
    )
    logger.info(
        "router %s: %s v%s -> v%s by %s", router.pk, kind, from_version, to_version, event.actor
    )
    if kind == RouterEventKind.PROMOTED:
        webhook_event_emit(router.organization_id, WebhookEvent.ROUTER_PROMOTED, _event_data(event))
    return event


def _event_data(event: RouterEvent) -> dict[str, Any]:
    """The ``router.promoted`` webhook's data: the audit entry, evidence included."""
    return {
        "router": event.router.slug,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "actor": event.actor,
        "evidence": event.evidence,
        "at": event.created_at.isoformat(),
    }


def _number(router: Router, number: int | None, field: str) -> RouterVersion | None:
    if number is None:
        return None
    version = RouterVersion.objects.filter(router=router, number=number).first()
    if version is None:
        raise NotFound(f"Router '{router.slug}' has no version {number}.", param=field)
    if version.pk == router.active_version_id:
        raise InvalidInput(f"Version {number} is the active version already.", param=field)
    return version


def _experiment_events(before: Router, after: Router, actor: str) -> None:
    """Audit entries for the experiment that started or stopped with this change."""
    for field, started, stopped in (
        ("shadow_version", RouterEventKind.SHADOW_STARTED, RouterEventKind.SHADOW_STOPPED),
        ("challenger_version", RouterEventKind.AB_STARTED, RouterEventKind.AB_STOPPED),
    ):
        old, new = getattr(before, field), getattr(after, field)
        if old == new:
            continue
        if old is not None:
            router_event_record(router=after, kind=stopped, actor=actor, to_version=old.number)
        if new is not None:
            router_event_record(router=after, kind=started, actor=actor, to_version=new.number)


def router_lifecycle_update(*, router: Router, changes: dict[str, Any], actor: str) -> Router:
    """Change a router's lifecycle settings (``LIFECYCLE_FIELDS``; versions by number, None to
    stop). One experiment at a time: a shadow and a challenger together are refused."""
    with transaction.atomic():
        locked = Router.objects.select_for_update().get(pk=router.pk)
        before = Router.objects.select_related("shadow_version", "challenger_version").get(
            pk=router.pk
        )
        changed = {}
        for field in LIFECYCLE_FIELDS:
            if field not in changes:
                continue
            value = changes[field]
            if field.endswith("_version"):
                value = _number(locked, value, field)
            elif getattr(locked, field) != value:
                changed[field] = value
            setattr(locked, field, value)
        if locked.shadow_version_id is not None and locked.challenger_version_id is not None:
            raise Conflict(
                "A router runs one experiment at a time: stop the shadow or the A/B split first "
                "(set shadow_version or challenger_version to null)."
            )
        # Serving processes reload the rows whose activated_at moved (routing.routers), and
        # load the new shadow or challenger before deciding with it.
        locked.activated_at = timezone.now()
        locked.save()
        _experiment_events(before, locked, actor)
        if changed:
            router_event_record(
                router=locked, kind=RouterEventKind.SETTINGS_CHANGED, actor=actor, evidence=changed
            )
    return locked


def version_switch(
    *, router: Router, number: int, kind: str, actor: str, evidence: dict[str, Any] | None = None
) -> Router:
    """Make version ``number`` serve (``services.version_activate``) and audit it as ``kind``.
    A promoted shadow or challenger ends its experiment: it is the active version now."""
    with transaction.atomic():
        before = Router.objects.select_for_update().get(pk=router.pk)
        from_number = (
            RouterVersion.objects.filter(router=before, pk=before.active_version_id or 0)
            .values_list("number", flat=True)
            .first()
        )
        activated = services.version_activate(router=before, number=number)
        ended = [
            f
            for f in ("shadow_version", "challenger_version")
            if getattr(activated, f"{f}_id") == activated.active_version_id
        ]
        for field in ended:
            setattr(activated, field, None)
        if ended:
            activated.save(update_fields=ended)
        router_event_record(
            router=activated,
            kind=kind,
            actor=actor,
            from_version=from_number,
            to_version=number,
            evidence=evidence,
        )
    return activated


def version_promote(*, router: Router, number: int, evidence: dict[str, Any]) -> Router:
    """The promotion rule's action: ``number`` serves, audited with the evidence it met."""
    return version_switch(
        router=router,
        number=number,
        kind=RouterEventKind.PROMOTED,
        actor=RULE_ACTOR,
        evidence=evidence,
    )


def router_rollback(*, router: Router, actor: str) -> Router:
    """Serve again the version that served before the last activation, promotion or rollback."""
    last = (
        RouterEvent.objects.filter(
            router=router,
            kind__in=(
                RouterEventKind.ACTIVATED,
                RouterEventKind.PROMOTED,
                RouterEventKind.ROLLED_BACK,
            ),
            from_version__isnull=False,
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if last is not None and last.from_version is not None:
        number, evidence = last.from_version, {"undoes": last.kind, "event": last.pk}
    else:
        number, evidence = _older_than_active(router), {"undoes": "unaudited activation"}
    return version_switch(
        router=router,
        number=number,
        kind=RouterEventKind.ROLLED_BACK,
        actor=actor,
        evidence=evidence,
    )


def _older_than_active(router: Router) -> int:
    """The newest version older than the active one (a rollback without an audited switch)."""
    active = router.versions.filter(pk=router.active_version_id or 0).first()
    older = router.versions.all()
    if active is not None:
        older = older.filter(number__lt=active.number)
    number = older.order_by("-number").values_list("number", flat=True).first()
    if number is None:
        raise Conflict(f"Router '{router.slug}' has no earlier version to roll back to.")
    return int(number)


def routers_with_promotion_rule(limit: int) -> list[Router]:
    """Routers whose experiment the promotion rule may end, oldest change first (bounded)."""
    routers = Router.objects.filter(promotion=Promotion.IF_BETTER).exclude(
        shadow_version__isnull=True, challenger_version__isnull=True
    )
    return list(
        routers.select_related("active_version", "shadow_version", "challenger_version").order_by(
            "activated_at", "pk"
        )[:limit]
    )
