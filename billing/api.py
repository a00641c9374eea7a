"""Billing API: the calling key, credits, ledger and usage (one generation: ``generation_api``)."""

from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.models import ApiKey, Role
from accounts.tenant_api import TenantAPIView
from billing.models import (
    CreditAccount,
    LedgerEntry,
    LedgerKind,
    UsageRecord,
    UsageStatus,
)
from billing.openrouter_shapes import (
    CreditsData,
    KeyData,
    credits_data,
    is_free_tier,
    key_data,
)
from billing.selectors import (
    GROUPINGS,
    UsageFilter,
    key_usage,
    usage_records,
)
from billing.usage_export import UsageCsv
from billing.usage_groups import UsageGroups
from routerhub.errors import BadRequest
from routerhub.keyset import KeysetPagination
from routerhub.money import ZERO, money_str
from routerhub.pagination import ResultsPagination

_money = serializers.CharField(allow_null=True)
CurrentKeyOutput = inline_serializer(
    "CurrentKey",
    {
        "id": serializers.IntegerField(),
        "name": serializers.CharField(),
        "prefix": serializers.CharField(),
        "scope": serializers.CharField(),
        "role": serializers.ChoiceField(
            choices=Role.choices,
            help_text="The role this key acts with now: at most its creator's current role.",
        ),
        "organization": inline_serializer(
            "KeyOrganization",
            {
                "id": serializers.IntegerField(),
                "slug": serializers.CharField(),
                "name": serializers.CharField(),
            },
        ),
        "limit": serializers.CharField(allow_null=True, help_text="The key's own limit."),
        "limit_remaining": serializers.CharField(
            allow_null=True,
            help_text="What the key can still spend: the least its own window and each of its "
            "ancestors' (keys it was made from) leave.",
        ),
        "limit_reset": serializers.CharField(
            allow_null=True, help_text="The key's own limit's period."
        ),
        "limit_reset_at": serializers.DateTimeField(
            allow_null=True,
            help_text="When the window limit_remaining comes from ends (null: never).",
        ),
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
        "data": KeyData,
    },
)

CreditsOutput = inline_serializer(
    "Credits",
    {
        "balance": _money,
        "reserved": _money,
        "available": _money,
        "total_purchased": _money,
        "total_used": _money,
        "currency": serializers.CharField(),
        "data": CreditsData,
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
        account = CreditAccount.objects.filter(organization=organization).first()
        openrouter = key_data(key, usage, is_free_tier=is_free_tier(account))
        return Response(
            {
                "id": key.pk,
                "name": key.name,
                "prefix": key.prefix,
                "scope": key.scope,
                "role": self.tenant.role,
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
                "data": openrouter,
            }
        )


class AuthKeyView(CurrentKeyView):
    """``GET /api/v1/auth/key`` (OpenRouter's path): the key in OpenRouter's envelope only."""

    @extend_schema(responses=inline_serializer("OpenRouterKeyEnvelope", {"data": KeyData}))
    def get(self, request: Request) -> Response:
        return Response({"data": super().get(request).data["data"]})


class CreditsView(TenantAPIView):
    """``GET /api/v1/credits``: the organization's balance."""

    tenant_model = CreditAccount

    @extend_schema(responses=CreditsOutput)
    def get(self, request: Request) -> Response:
        account = self.get_queryset().select_related("hold").first() or CreditAccount(
            organization=self.organization
        )
        return Response(
            {
                "balance": money_str(account.balance),
                "reserved": money_str(account.reserved),
                "available": money_str(max(ZERO, account.balance - account.reserved)),
                "total_purchased": money_str(account.total_purchased),
                "total_used": money_str(account.total_used),
                "currency": "USD",
                "data": credits_data(account),
            }
        )


class LedgerEntryOutput(serializers.ModelSerializer[LedgerEntry]):
    amount = serializers.DecimalField(max_digits=20, decimal_places=8)
    balance_after = serializers.DecimalField(max_digits=20, decimal_places=8)

    class Meta:
        model = LedgerEntry
        fields = ["id", "kind", "amount", "balance_after", "description", "reference", "created_at"]


class LedgerView(TenantAPIView):
    """``GET /api/v1/ledger``: append-only credit ledger, newest first."""

    tenant_model = LedgerEntry
    serializer_class = LedgerEntryOutput
    pagination_class = KeysetPagination

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        kind = self.request.query_params.get("kind")
        if kind:
            queryset = queryset.filter(kind=kind)
        return queryset.order_by("-created_at", "-id")

    @extend_schema(
        responses=LedgerEntryOutput(many=True),
        parameters=[OpenApiParameter("kind", str, enum=[k.value for k in LedgerKind])],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(LedgerEntryOutput(page, many=True).data)


UsageOutput = inline_serializer(
    "Usage",
    {
        "group_by": serializers.CharField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "count": serializers.IntegerField(),
        "results": inline_serializer(
            "UsageGroup",
            {
                "group": serializers.CharField(allow_null=True),
                "requests": serializers.IntegerField(),
                "prompt_tokens": serializers.IntegerField(),
                "completion_tokens": serializers.IntegerField(),
                "cache_write_tokens": serializers.IntegerField(
                    help_text="Of prompt_tokens: written to a provider's prompt cache."
                ),
                "cost": serializers.CharField(),
            },
            many=True,
        ),
    },
)


KEY_ID_EXPECTED = "Must be a key's id, as GET /api/v1/keys lists them."


class UsageQuery(serializers.Serializer[Any]):
    start = serializers.DateTimeField(required=False, input_formats=["iso-8601", "%Y-%m-%d"])
    end = serializers.DateTimeField(required=False, input_formats=["iso-8601", "%Y-%m-%d"])
    group_by = serializers.ChoiceField(choices=sorted(GROUPINGS), default="day")
    # A model id is at most 200 characters (``UsageRecord.model``, a key's ``allowed_models``):
    # a longer filter matches nothing, and was read whole (a URL's length) into the query.
    model = serializers.CharField(required=False, max_length=200)
    # A key id is a bigint: past it PostgreSQL refused the rollups' query (a 500).
    key = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=2**63 - 1,
        error_messages=dict.fromkeys(("min_value", "max_value"), KEY_ID_EXPECTED),
    )
    status = serializers.ChoiceField(choices=UsageStatus.choices, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("start") and attrs.get("end") and attrs["start"] >= attrs["end"]:
            raise serializers.ValidationError({"end": "must be after start"})
        return attrs

    def usage_filter(self) -> UsageFilter:
        data = self.validated_data
        return UsageFilter(
            start=data.get("start"),
            end=data.get("end"),
            model=data.get("model"),
            key_id=data.get("key"),
            status=data.get("status"),
        )


def pinned_end(filters: UsageFilter) -> str | None:
    """The ``end`` that the links to a range's other pages of groups carry: the request time
    when the range is open-ended (and has begun), so a group first used while someone pages
    does not shift the groups between pages; ``None`` when the range has its own end."""
    now = timezone.now()
    if filters.end is not None or (filters.start is not None and filters.start >= now):
        return None
    return now.isoformat().replace("+00:00", "Z")


class UsageGroupsPagination(ResultsPagination):
    page_size = 1000  # three years of days in one page
    max_page_size = 1000


class UsageView(TenantAPIView):
    """``GET /api/v1/usage``: aggregates grouped by day, model, key, router or provider, up to
    ``UsageGroupsPagination.page_size`` groups a page (an organization's keys or routers, or the
    days of years, are more than one answer should hold). Without ``end``, the first page reads the
    open range and its ``next`` and ``previous`` links carry ``end=<its request time>``, so a
    group first used while a client pages does not shift the groups between pages."""

    tenant_model = UsageRecord
    pagination_class = UsageGroupsPagination

    @extend_schema(parameters=[UsageQuery], responses=UsageOutput)
    def get(self, request: Request) -> Response:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.usage_filter()
        # The first page reads the open range (whole rollups); only the links fix its end.
        end = pinned_end(filters)
        rows = UsageGroups(
            organization_id=self.organization.pk,
            filters=filters,
            group_by=query.validated_data["group_by"],
        )
        results = [
            {
                "group": str(row["group"]) if row["group"] is not None else None,
                "requests": row["requests"],
                "prompt_tokens": row["prompt_tokens"],
                "completion_tokens": row["completion_tokens"],
                "cache_write_tokens": row["cache_write_tokens"],
                "cost": money_str(row["cost"]),
            }
            for row in self.paginate_queryset(rows) or []  # type: ignore[arg-type]
        ]
        response = self.get_paginated_response(results)
        response.data = {"group_by": query.validated_data["group_by"], **response.data}
        if end:
            for link in ("next", "previous"):
                if response.data[link]:
                    response.data[link] = replace_query_param(response.data[link], "end", end)
        return response


class UsageExportView(TenantAPIView):
    """``GET /api/v1/usage/export.csv``: the raw usage rows (same filters as /usage)."""

    tenant_model = UsageRecord

    @extend_schema(parameters=[UsageQuery], responses={(200, "text/csv"): str})
    def get(self, request: Request) -> StreamingHttpResponse:
        query = UsageQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        stream = UsageCsv(
            usage_records(organization_id=self.organization.pk, filters=query.usage_filter())
        )
        # An async iterator under ASGI (Django would buffer a sync one whole), else a sync one.
        asgi = isinstance(request._request, ASGIRequest)
        content = stream.achunks() if asgi else stream.chunks()
        response = StreamingHttpResponse(content, content_type="text/csv")
        filename = f"routerhub-usage-{self.organization.slug}-{timezone.now():%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
