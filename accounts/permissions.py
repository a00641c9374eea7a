"""The one DRF permission: authenticated, in an organization, with the role the method needs."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import Role, role_allows
from accounts.tenancy import tenant_for_request


class IsOrganizationMember(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        tenant = tenant_for_request(request)
        if tenant is None:
            if request.user.is_authenticated:
                raise PermissionDenied("You are not a member of any organization.")
            raise NotAuthenticated("Authenticate with 'Authorization: Bearer rh-…' or sign in.")
        if tenant.key is not None and getattr(view, "people_only", False):
            raise PermissionDenied("This action needs a signed-in person, not an API key.")
        if tenant.is_inference_key and not getattr(view, "inference_key_allowed", False):
            raise PermissionDenied(
                "Inference keys (rh-live-) cannot call this endpoint; "
                "use a management key (rh-mgmt-) or the dashboard."
            )
        required = view.required_role() if hasattr(view, "required_role") else Role.MEMBER
        if not role_allows(tenant.role, required):
            needed = f"This action needs the {required.label.lower()} role"
            if tenant.key is None or not tenant.key.is_management:
                raise PermissionDenied(f"{needed}.")
            raise PermissionDenied(
                f"{needed}; this management key acts with the {tenant.role.label.lower()} role "
                f"of the person who created it (use a key created by an {required.label.lower()})."
            )
        return True
