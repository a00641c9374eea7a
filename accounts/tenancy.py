"""Tenancy: resolve the organization of a request once, and scope every queryset to it.

A request belongs to exactly one organization: the API key's, or for a dashboard session the
organization stored in the session (validated against the user's memberships). API views
inherit ``accounts.tenant_api.TenantAPIView``, whose ``get_queryset`` is the only way to reach
tenant rows; a view that truly needs unscoped rows must call ``dangerously_unscoped_queryset``.
Dashboard views are wrapped in ``organization_required`` and take their organization from
``dashboard_organization`` (their membership from ``dashboard_membership``), and reach rows with
``Model.objects.for_tenant(organization)`` or ``tenant_object_or_404``: another organization's
row is a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from accounts.keys import AuthenticatedKey
from accounts.models import Membership, Organization, Role

View = Callable[..., HttpResponse]
_Row = TypeVar("_Row", bound=Model)
_Row_co = TypeVar("_Row_co", bound=Model, covariant=True)


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
    if isinstance(cached, Tenant):
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


# --- the dashboard ------------------------------------------------------------------------------


def dashboard_membership(request: HttpRequest) -> Membership:
    """The signed-in user's membership in the session's organization; 403 without one."""
    membership = getattr(request, "membership", None)  # CurrentOrganizationMiddleware, lazily
    if isinstance(membership, Membership):  # a lazy object passes as what it wraps
        return membership
    raise PermissionDenied("You are not a member of any organization.")


def dashboard_organization(request: HttpRequest) -> Organization:
    """The organization every dashboard view works in."""
    return dashboard_membership(request).organization


def organization_required(role: Role = Role.MEMBER) -> Callable[[View], View]:
    """Signed in, in an organization, with at least ``role``; otherwise 403 (never a redirect loop)."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not dashboard_membership(request).has_role(role):
                raise PermissionDenied(f"This page needs the {role.label.lower()} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class _TenantRows(Protocol[_Row_co]):
    """A tenant model's manager or queryset."""

    def for_tenant(self, organization: Organization) -> QuerySet[_Row_co]: ...


def tenant_object_or_404(
    rows: _TenantRows[_Row], organization: Organization, **lookup: Any
) -> _Row:
    """The one row of ``organization`` matching ``lookup``; 404 when it is missing or another's."""
    row = rows.for_tenant(organization).filter(**lookup).first()
    if row is None:
        raise Http404
    return row
