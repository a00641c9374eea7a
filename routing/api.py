"""``/api/v1/provider-keys``: the organization's own provider credentials (BYOK)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.errors import BadRequest
from routing import services
from routing.models import Provider, ProviderKey
from routing.serializers import ProviderKeyCreateInput, ProviderKeyOutput

ADMIN_WRITES = {"POST": Role.ADMIN, "DELETE": Role.ADMIN}


class ProviderKeyListView(TenantAPIView):
    tenant_model = ProviderKey
    required_roles = ADMIN_WRITES
    serializer_class = ProviderKeyOutput

    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("provider")

    @extend_schema(responses=ProviderKeyOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ProviderKeyOutput(page, many=True).data)

    @extend_schema(request=ProviderKeyCreateInput, responses={201: ProviderKeyOutput})
    def post(self, request: Request) -> Response:
        data = ProviderKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        provider = Provider.objects.filter(
            slug=data.validated_data["provider"], is_simulated=False
        ).first()
        if provider is None:
            raise BadRequest("Unknown provider.", param="provider")
        key = services.provider_key_create(
            organization=self.organization,
            provider=provider,
            secret=data.validated_data["secret"],
            name=data.validated_data["name"],
            base_url=data.validated_data["base_url"],
            created_by=request.user if request.user.is_authenticated else None,
        )
        return Response(ProviderKeyOutput(key).data, status=status.HTTP_201_CREATED)


class ProviderKeyDetailView(TenantAPIView):
    tenant_model = ProviderKey
    required_roles = ADMIN_WRITES
    serializer_class = ProviderKeyOutput
    lookup_url_kwarg = "provider_key_id"
    lookup_field = "pk"

    @extend_schema(responses={204: None})
    def delete(self, request: Request, provider_key_id: int) -> Response:
        services.provider_key_delete(key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
