"""Template context: the current organization, role and the user's other organizations."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.models import Membership


def organization(request: HttpRequest) -> dict[str, Any]:
    membership = getattr(request, "membership", None)
    if membership is None or not request.user.is_authenticated:
        return {}
    if not membership:  # SimpleLazyObject wrapping None
        return {}
    others = (
        Membership.objects.filter(user=request.user)
        .select_related("organization")
        .order_by("organization__name")
    )
    return {
        "current_membership": membership,
        "current_organization": membership.organization,
        "my_memberships": others,
    }
