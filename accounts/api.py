"""``/api/v1/keys``: the organization's API keys (DRF, session with CSRF or management key)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.models import ApiKey, Role
from accounts.serializers import (
    ApiKeyCreatedOutput,
    ApiKeyCreateInput,
    ApiKeyOutput,
    ApiKeyUpdateInput,
)
from accounts.tenant_api import TenantAPIView

ADMIN_WRITES = {"POST": Role.ADMIN, "PATCH": Role.ADMIN, "DELETE": Role.ADMIN}


class ApiKeyListView(TenantAPIView):
    tenant_model = ApiKey
    required_roles = ADMIN_WRITES
    serializer_class = ApiKeyOutput

    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("created_by").order_by("-created_at", "-id")

    @extend_schema(responses=ApiKeyOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiKeyOutput(page, many=True).data)

    @extend_schema(request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput})
    def post(self, request: Request) -> Response:
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        # A key made with a management key is its creator's and can do no more than that key.
        created = services.api_key_create(
            organization=self.organization,
            created_by=self.acting_person(),
            created_by_role=self.tenant.role,
            **data.validated_data,
        )
        body = ApiKeyOutput(created.key).data | {"key": created.plaintext}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(TenantAPIView):
    tenant_model = ApiKey
    required_roles = ADMIN_WRITES
    serializer_class = ApiKeyOutput
    lookup_url_kwarg = "key_id"
    lookup_field = "pk"

    @extend_schema(responses=ApiKeyOutput)
    def get(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeyOutput(self.get_object()).data)

    @extend_schema(request=ApiKeyUpdateInput, responses=ApiKeyOutput)
    def patch(self, request: Request, key_id: int) -> Response:
        key = self.get_object()
        data = ApiKeyUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        key = services.api_key_update(key=key, changes=dict(data.validated_data))
        return Response(ApiKeyOutput(key).data)

    @extend_schema(responses={200: ApiKeyOutput})  # the revoked key (DELETE revokes, API.md)
    def delete(self, request: Request, key_id: int) -> Response:
        key = services.api_key_revoke(key=self.get_object())
        return Response(ApiKeyOutput(key).data)
