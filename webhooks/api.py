"""``/api/v1/webhooks``: an organization's webhook endpoints and their delivery log (admins)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.domain import NotFound
from webhooks import selectors, services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.serializers import (
    WebhookDeliveryOutput,
    WebhookEndpointCreatedOutput,
    WebhookEndpointInput,
    WebhookEndpointOutput,
)

ADMIN_ONLY = dict.fromkeys(("GET", "POST", "PATCH", "DELETE"), Role.ADMIN)


class WebhookListView(TenantAPIView):
    tenant_model = WebhookEndpoint
    required_roles = ADMIN_ONLY
    serializer_class = WebhookEndpointOutput

    @extend_schema(responses=WebhookEndpointOutput(many=True))
    def get(self, request: Request) -> Response:
        endpoints = self.get_queryset().select_related("created_by")
        page = self.paginate_queryset(endpoints.order_by("-created_at", "-id"))
        return self.get_paginated_response(WebhookEndpointOutput(page, many=True).data)

    @extend_schema(request=WebhookEndpointInput, responses={201: WebhookEndpointCreatedOutput})
    def post(self, request: Request) -> Response:
        data = WebhookEndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.webhook_endpoint_create(
            organization=self.organization, created_by=self.acting_person(), **data.validated_data
        )
        body = WebhookEndpointOutput(created.endpoint).data | {"secret": created.secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailView(TenantAPIView):
    tenant_model = WebhookEndpoint
    required_roles = ADMIN_ONLY
    serializer_class = WebhookEndpointOutput
    lookup_url_kwarg = "webhook_id"
    lookup_field = "pk"

    @extend_schema(responses=WebhookEndpointOutput)
    def get(self, request: Request, webhook_id: int) -> Response:
        return Response(WebhookEndpointOutput(self.get_object()).data)

    @extend_schema(request=WebhookEndpointInput, responses=WebhookEndpointOutput)
    def patch(self, request: Request, webhook_id: int) -> Response:
        data = WebhookEndpointInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.webhook_endpoint_update(
            endpoint=self.get_object(),
            changes=dict(data.validated_data),
            actor=self.acting_person(),
        )
        return Response(WebhookEndpointOutput(endpoint).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, webhook_id: int) -> Response:
        self.get_object().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(TenantAPIView):
    """Newest first; each row is one event sent to the endpoint, with its latest attempt."""

    tenant_model = WebhookDelivery
    required_roles = ADMIN_ONLY
    serializer_class = WebhookDeliveryOutput

    def scope_queryset(self, queryset: Any) -> Any:
        mine = queryset.filter(endpoint_id=self.kwargs["webhook_id"])
        hinted = selectors.deliveries_with_lost_hint(mine, now=timezone.now())
        return hinted.order_by("-created_at", "-id")

    @extend_schema(responses=WebhookDeliveryOutput(many=True))
    def get(self, request: Request, webhook_id: int) -> Response:
        endpoint_exists = WebhookEndpoint.objects.filter(
            organization=self.organization, pk=webhook_id
        ).exists()
        if not endpoint_exists:
            raise NotFound("No such webhook endpoint.", param="webhook_id")
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookDeliveryOutput(page, many=True).data)
