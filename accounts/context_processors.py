"""Template context: the current organization, role and the user's other organizations."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import Membership

SWITCHER_SIZE = 20


def organization(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    if membership is None or not request.user.is_authenticated:
        return {}
    if not membership:  # SimpleLazyObject wrapping None
        return {}
    # The switcher lists at most SWITCHER_SIZE organizations (the current one always); a person
    # in more finds the rest, a page at a time, on the Organization page.
    others = list(
        Membership.objects.filter(user=request.user)
        .exclude(organization_id=membership.organization_id)
        .select_related("organization")
        .order_by("organization__name", "organization_id")[:SWITCHER_SIZE]
    )
    shown = sorted([membership, *others[: SWITCHER_SIZE - 1]], key=_by_name)
    return {
        "current_membership": membership,
        "current_organization": membership.organization,
        "my_memberships": shown,
        "more_memberships": len(others) >= SWITCHER_SIZE,
    }


def _by_name(membership: Membership) -> tuple[str, int]:
    return (membership.organization.name, membership.organization_id)
