"""Billing API: the calling key (with its spend and limits)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiKey
from accounts.tenant_api import TenantAPIView
from billing.selectors import key_usage
from routerhub.errors import BadRequest
from routerhub.money import money_str

_money = serializers.CharField(allow_null=True)
CurrentKeyOutput = inline_serializer(
    "CurrentKey",
    {
        "id": serializers.IntegerField(),
        "name": serializers.CharField(),
        "prefix": serializers.CharField(),
        "scope": serializers.CharField(),
        "organization": inline_serializer(
            "KeyOrganization",
            {
                "id": serializers.IntegerField(),
                "slug": serializers.CharField(),
                "name": serializers.CharField(),
            },
        ),
        "limit": _money,
        "limit_remaining": _money,
        "limit_reset": serializers.CharField(allow_null=True),
        "limit_reset_at": serializers.DateTimeField(allow_null=True),
        "usage": _money,
        "usage_daily": _money,
        "usage_weekly": _money,
        "usage_monthly": _money,
        "expires_at": serializers.DateTimeField(allow_null=True),
        "rate_limit": inline_serializer(
            "KeyRateLimit",
            {
                "rpm": serializers.IntegerField(allow_null=True),
                "tpm": serializers.IntegerField(allow_null=True),
            },
        ),
    },
)


class CurrentKeyView(TenantAPIView):
    """``GET /api/v1/key``: the key in the Authorization header."""

    tenant_model = ApiKey
    inference_key_allowed = True

    @extend_schema(responses=CurrentKeyOutput)
    def get(self, request: Request) -> Response:
        if self.tenant.key is None:
            raise BadRequest("GET /api/v1/key describes the API key in the Authorization header.")
        key = self.get_queryset().get(pk=self.tenant.key.id)
        usage = key_usage(key=key)
        organization = self.organization
        return Response(
            {
                "id": key.pk,
                "name": key.name,
                "prefix": key.prefix,
                "scope": key.scope,
                "organization": {
                    "id": organization.pk,
                    "slug": organization.slug,
                    "name": organization.name,
                },
                "limit": money_str(key.limit),
                "limit_remaining": money_str(usage.limit_remaining),
                "limit_reset": key.limit_reset,
                "limit_reset_at": usage.limit_reset_at,
                "usage": money_str(usage.usage),
                "usage_daily": money_str(usage.usage_daily),
                "usage_weekly": money_str(usage.usage_weekly),
                "usage_monthly": money_str(usage.usage_monthly),
                "expires_at": key.expires_at,
                "rate_limit": {"rpm": key.rpm, "tpm": key.tpm},
            }
        )
