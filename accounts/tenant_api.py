"""``TenantAPIView``: the base of every ``/api/v1/`` view; querysets are the organization's only."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.generics import GenericAPIView

from accounts.models import Organization, Role, User
from accounts.tenancy import Tenant, tenant_for_request


class TenantAPIView(GenericAPIView[Any]):
    """Base of every ``/api/v1/`` view. Querysets are filtered to the request's organization.

    ``tenant_model`` names the model; ``required_roles`` maps HTTP methods to the least role
    that may call them; ``inference_key_allowed`` opens the view to ``rh-live-`` keys.
    """

    tenant_model: ClassVar[type[Model] | None] = None
    required_roles: ClassVar[dict[str, Role]] = {}
    inference_key_allowed: ClassVar[bool] = False
    people_only: ClassVar[bool] = False

    @property
    def tenant(self) -> Tenant:
        tenant = tenant_for_request(self.request)
        assert tenant is not None, "permission classes run before the view body"
        return tenant

    @property
    def organization(self) -> Organization:
        return self.tenant.organization

    def acting_person(self) -> User | None:
        """Who is behind the request: the signed-in person, or the creator of its API key."""
        if isinstance(self.request.user, User):
            return self.request.user
        key = self.tenant.key
        if key is None or key.created_by_id is None:
            return None
        return User.objects.filter(pk=key.created_by_id).first()

    def acting_key_id(self) -> int | None:
        """The API key the request authenticated with; None for a signed-in person."""
        key = self.tenant.key
        return None if key is None else key.id

    def served_by(self) -> int | None:
        """Whose requests (generations) this caller may see and rate: an inference key's id (its
        own requests and those of keys it made, ``accounts.key_lineage.key_answers_for``); None
        (the organization's all) for a management key or a person's session."""
        key = self.tenant.key
        return key.id if key is not None and not key.is_management else None

    def required_role(self) -> Role:
        return self.required_roles.get(self.request.method or "GET", Role.MEMBER)

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Hook for subclasses to narrow (never widen) the tenant's queryset."""
        return queryset

    def get_queryset(self) -> QuerySet[Any]:
        assert self.tenant_model is not None, f"{type(self).__name__} must set tenant_model"
        manager = self.tenant_model._default_manager
        return self.scope_queryset(manager.filter(organization=self.organization))

    def dangerously_unscoped_queryset(self) -> QuerySet[Any]:
        assert self.tenant_model is not None
        return self.tenant_model._default_manager.all()
