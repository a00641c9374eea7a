"""``/api/v1/keys``: the organization's API keys (DRF, session with CSRF or management key)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import key_lineage
from accounts.models import ApiKey, Role
from accounts.serializers import (
    ApiKeyCreatedOutput,
    ApiKeyCreateInput,
    ApiKeyOutput,
    ApiKeyUpdateInput,
)
from accounts.tenant_api import TenantAPIView

ADMIN_WRITES = {"POST": Role.ADMIN, "PATCH": Role.ADMIN, "DELETE": Role.ADMIN}
BOUNDED = (
    "Through a management key: no key, that key included, gets a later `expires_at`, a higher "
    "`limit` (or shorter `limit_reset`), `rpm` or `tpm`, or a model outside `allowed_models` "
    "than that key has (403 naming the field); a created key takes that key's where the body "
    "leaves them out, and records it as `created_by_key`. A key it did not make (outside its "
    "lineage) it may narrow, but if it has any bound itself (`expires_at`, `limit`, `rpm`, "
    "`tpm` or `allowed_models`) give it no more, on any field, than that key has now. "
    "A signed-in person's session may set any value. An earlier `expires_at` holds for the keys "
    "made from the key too, transitively; so does a narrower `allowed_models`: each keeps only "
    "its models also in the new list (one allowed any model, the new list), and a key left "
    'with none shows `["(none)"]`, a name no model has (it can call no model).'
)


class ApiKeyListView(TenantAPIView):
    tenant_model = ApiKey
    required_roles = ADMIN_WRITES
    serializer_class = ApiKeyOutput

    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("created_by", "created_by_key").order_by(
            "-created_at", "-id"
        )

    @extend_schema(responses=ApiKeyOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiKeyOutput(page, many=True).data)

    @extend_schema(
        request=ApiKeyCreateInput,
        responses={201: ApiKeyCreatedOutput},
        description=BOUNDED,
    )
    def post(self, request: Request) -> Response:
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        # A key made with a management key is its creator's and can do no more than that key
        # (its role, expiry, limits and models; what the request leaves out, it inherits).
        created = key_lineage.api_key_create_bounded(
            acting_key_id=self.acting_key_id(),
            organization=self.organization,
            created_by=self.acting_person(),
            created_by_role=self.tenant.role,
            requested=dict(data.validated_data),
        )
        body = ApiKeyOutput(created.key).data | {"key": created.plaintext}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(TenantAPIView):
    tenant_model = ApiKey
    required_roles = ADMIN_WRITES
    serializer_class = ApiKeyOutput
    lookup_url_kwarg = "key_id"
    lookup_field = "pk"

    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("created_by", "created_by_key")

    @extend_schema(responses=ApiKeyOutput)
    def get(self, request: Request, key_id: int) -> Response:
        return Response(ApiKeyOutput(self.get_object()).data)

    @extend_schema(request=ApiKeyUpdateInput, responses=ApiKeyOutput, description=BOUNDED)
    def patch(self, request: Request, key_id: int) -> Response:
        key = self.get_object()
        data = ApiKeyUpdateInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        key = key_lineage.api_key_update_bounded(
            acting_key_id=self.acting_key_id(), key=key, changes=dict(data.validated_data)
        )
        return Response(ApiKeyOutput(key).data)

    @extend_schema(
        responses={  # the revoked key (DELETE revokes, API.md)
            200: ApiKeyOutput,
            403: OpenApiResponse(
                description="The role may not revoke keys, or the acting management key is "
                "bounded or was made by a key and the key is outside its lineage (`param`: "
                "key_id)."
            ),
        },
        description="Revokes the key and every key made with it (`created_by_key`), transitively. "
        "A management key that is bounded (`expires_at`, `limit`, `rpm`, `tpm` or "
        "`allowed_models`) or was made by a key revokes only itself and the keys made from it "
        "(403 for any other); a person's session, any key of the organization.",
    )
    def delete(self, request: Request, key_id: int) -> Response:
        key = self.get_object()
        key_lineage.revoke_check(acting_key_id=self.acting_key_id(), key=key)
        key = key_lineage.api_key_revoke(key=key)
        return Response(ApiKeyOutput(key).data)
