"""``/api/v1/provider-keys``: the organization's own provider credentials (BYOK)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.errors import BadRequest
from routing import services
from routing.feedback import feedback_record
from routing.models import Feedback, Provider, ProviderKey
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


class FeedbackInput(serializers.Serializer[Any]):
    generation_id = serializers.CharField(max_length=64)
    score = serializers.FloatField(min_value=0, max_value=1, help_text="0 (bad) … 1 (good)")
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("score"), bool):
            data = {**data, "score": 1.0 if data["score"] else 0.0}  # thumbs up/down
        return super().to_internal_value(data)


class FeedbackView(TenantAPIView):
    """``POST /api/v1/feedback``: quality feedback on a served request (inference keys too)."""

    tenant_model = Feedback
    inference_key_allowed = True

    @extend_schema(
        description=(
            "Quality feedback on a served request; sending it again replaces it. An inference "
            "key rates only requests it sent, or a key it made sent: any other id, another "
            "key's of the organization included (a second rating service, a key rotated in), "
            "is a 404 as an unknown one; rate it with the key that sent it or a management "
            "key. An inference key never replaces feedback a person (dashboard, session) or a "
            "management key gave (409). Management keys and sessions rate any request of the organization."
        ),
        request=FeedbackInput,
        responses={201: FeedbackInput},
    )
    def post(self, request: Request) -> Response:
        data = FeedbackInput(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = feedback_record(
            organization_id=self.organization.pk,
            key_id=self.tenant.key.id if self.tenant.key else None,
            user_id=request.user.pk if self.tenant.key is None else None,
            served_by=self.served_by(),
            **data.validated_data,
        )
        body = {
            "generation_id": feedback.usage_id,
            "score": feedback.score,
            "comment": feedback.comment,
        }
        return Response(body, status=201)
