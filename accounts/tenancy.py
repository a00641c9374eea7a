"""Tenancy: resolve the organization of a request once, and scope every API queryset to it.

A request belongs to exactly one organization: the API key's, or for a dashboard session the
organization stored in the session (validated against the user's memberships). API views
inherit ``accounts.tenant_api.TenantAPIView``, whose ``get_queryset`` is the only way to reach
tenant rows; a view that truly needs unscoped rows must call ``dangerously_unscoped_queryset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.keys import AuthenticatedKey
from accounts.models import Membership, Organization, Role


@dataclass(frozen=True)
class Tenant:
    organization: Organization
    role: Role
    key: AuthenticatedKey | None = None

    @property
    def is_inference_key(self) -> bool:
        return self.key is not None and not self.key.is_management


def session_membership(request: HttpRequest) -> Membership | None:
    """The signed-in user's membership in the organization chosen in the session (or the first)."""
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("organization").filter(user=user)
    chosen = request.session.get(settings.ORGANIZATION_SESSION_KEY)
    membership = None
    if chosen is not None:
        membership = memberships.filter(organization_id=chosen).first()
    if membership is None:
        membership = memberships.order_by("-organization__is_personal", "created_at").first()
        if membership is not None:
            request.session[settings.ORGANIZATION_SESSION_KEY] = membership.organization_id
    return membership


def tenant_for_request(request: Any) -> Tenant | None:
    """Resolve (and memoize on the request) the tenant of a DRF or Django request."""
    cached = getattr(request, "_tenant", None)
    if cached is not None:
        return cached
    tenant: Tenant | None = None
    key = getattr(request, "auth", None)
    if isinstance(key, AuthenticatedKey):
        organization = Organization.objects.get(pk=key.organization_id)
        # A management key acts for the organization as its creator would in the dashboard
        # (their current role, ``key_role``); people-only actions still need a session.
        tenant = Tenant(organization, key.role if key.is_management else Role.MEMBER, key)
    else:
        membership = session_membership(getattr(request, "_request", request))
        if membership is not None:
            tenant = Tenant(membership.organization, Role(membership.role))
    request._tenant = tenant
    return tenant
