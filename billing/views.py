"""Dashboard pages of billing: credits (balance, buy, transactions) and usage (chart, log, export)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import ApiKey, KeyScope, Role
from accounts.tenancy import dashboard_membership, dashboard_organization, organization_required
from billing.api import UsageQuery, pinned_end
from billing.charts import LEGEND_MODELS, spend_chart
from billing.models import CreditAccount, LedgerEntry, LedgerKind, Payment, UsageStatus
from billing.pricing import topup_fee
from billing.selectors import (
    GROUPINGS,
    UsageFilter,
    usage_records,
    usage_summary,
)
from billing.usage_groups import UsageGroups, spend_by_day_top_models
from routerhub.errors import ApiError
from routerhub.keyset import keyset_page_for
from routerhub.money import ZERO
from routerhub.pages import dashboard_page

CHART_DAYS = 30


def spend_chart_for(organization_id: int) -> Any:
    """The last ``CHART_DAYS`` UTC days' spend chart. Its legend's models are the costliest of
    exactly the days it draws (from the start of the first one: whole days, read from the
    rollups), not of a window reaching into the day before them."""
    today = timezone.now().astimezone(UTC).date()
    first_day = today - timedelta(days=CHART_DAYS - 1)
    since = datetime.combine(first_day, time.min, tzinfo=UTC)
    rows = spend_by_day_top_models(organization_id=organization_id, since=since, top=LEGEND_MODELS)
    return spend_chart(rows, days=CHART_DAYS, today=today)


@organization_required(Role.OWNER)
def credits_page(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    account = CreditAccount.objects.for_tenant(organization).select_related("hold").first()
    account = account or CreditAccount(organization=organization)
    entries = LedgerEntry.objects.for_tenant(organization)
    page = keyset_page_for(entries, request.GET.get("cursor"), 25)
    example = settings.TOPUP_MIN_AMOUNT * 4
    return render(
        request,
        "billing/credits.html",
        {
            "account": account,
            "available": account.balance - account.reserved,
            "page": page,
            "fee_rate_percent": settings.TOPUP_FEE_RATE * 100,
            "fee_minimum": settings.TOPUP_FEE_MINIMUM,
            "example_amount": example,
            "example_fee": topup_fee(example),
            "example_total": example + topup_fee(example),
            "payments": Payment.objects.for_tenant(organization)
            .annotate(total=F("amount") + F("fee"))
            .order_by("-created_at")[:20],
            "min_amount": settings.TOPUP_MIN_AMOUNT,
            "max_amount": settings.TOPUP_MAX_AMOUNT,
            "billing_enabled": settings.BILLING_ENABLED,
            "starter_credits": settings.STARTER_CREDITS_USD,
            # Starter credits go once per person, inbox and (beyond a few) email domain: an
            # organization that got none is told why rather than promised them.
            "starter_granted": entries.filter(
                kind=LedgerKind.PROMOTION, idempotency_key__startswith="starter-credits:"
            ).exists(),
            "starter_per_domain": settings.STARTER_CREDITS_PER_DOMAIN,
            "starter_window_days": settings.STARTER_CREDITS_DOMAIN_WINDOW_DAYS,
            "byok_fee_percent": settings.BYOK_FEE_RATE * 100,
            "organization_slug": organization.slug,
        },
    )


KEY_CHOICES = 50


def _key_choices(organization: Any, chosen: int | None) -> list[ApiKey]:
    """The key filter's menu: the ``KEY_CHOICES`` most recently used inference keys and the one
    chosen (an organization may have thousands; the usage API filters by any key id)."""
    keys = ApiKey.objects.filter(organization=organization, scope=KeyScope.INFERENCE)
    shown = list(keys.order_by(F("last_used_at").desc(nulls_last=True), "-id")[:KEY_CHOICES])
    if chosen is not None and all(key.pk != chosen for key in shown):
        shown += list(keys.filter(pk=chosen))
    return sorted(shown, key=lambda key: (key.name, key.pk))


MODEL_CHOICES = 50
GROUPS_PAGE = 50
# The usage page's own parameters: its pages, not filters (the export link carries the filters).
_PAGE_PARAMS = {"page", "cursor", "groups_page"}


def _model_choices(organization_id: int, filters: UsageFilter) -> list[str]:
    """The model filter's menu: the range's first ``MODEL_CHOICES`` models by name (its other
    filters apply, the model filter not) and the one chosen; one statement, however many."""
    others = UsageGroups(organization_id=organization_id,
                         filters=replace(filters, model=None), group_by="model")  # fmt: skip
    shown = [row["group"] for row in others[:MODEL_CHOICES] if row["group"]]
    if filters.model and filters.model not in shown:
        shown.append(filters.model)
    return sorted(shown)


def _usage_query(
    params: dict[str, Any],
) -> tuple[UsageQuery, dict[str, Any], dict[str, Any]]:
    """The usage page's query, validated, its errors by parameter and the parameters kept: a
    parameter that is not valid (``group_by=junk``, ``key=abc``, an end before the start) is
    left out and reported, the others still filter."""
    query = UsageQuery(data={"group_by": "model"} | params)
    if query.is_valid():
        return query, {}, params
    errors = dict(query.errors)
    kept = {name: value for name, value in params.items() if name not in errors}
    query = UsageQuery(data={"group_by": "model"} | kept)
    if not query.is_valid():  # what is left is valid on its own; to be sure, filter nothing
        query = UsageQuery(data={"group_by": "model"})
        query.is_valid(raise_exception=True)
    return query, errors, kept


def _groups_page(request: HttpRequest) -> dict[str, str]:
    number = request.GET.get("groups_page")
    return {"groups_page": number} if number else {}


@organization_required()
def usage_page(request: HttpRequest) -> HttpResponse:
    """The 30-day chart, the range's totals and its groups (by model unless ``group_by`` says
    otherwise; a page of ``GROUPS_PAGE``, added up, ordered and cut by the database as
    ``GET /api/v1/usage`` does) and the request log (keyset pages)."""
    organization = dashboard_organization(request)
    params = {k: v for k, v in request.GET.items() if v and k not in _PAGE_PARAMS}
    query, errors, kept = _usage_query(params)
    filters, group_by = query.usage_filter(), query.validated_data["group_by"]
    end = pinned_end(filters)
    records = usage_records(organization_id=organization.pk, filters=filters).select_related("key")
    groups = UsageGroups(organization_id=organization.pk, filters=filters, group_by=group_by)
    return render(
        request,
        "billing/usage.html",
        {
            "chart": spend_chart_for(organization.pk),
            "page": keyset_page_for(records, request.GET.get("cursor"), 50),
            "groups": dashboard_page(
                request,
                groups,
                param="groups_page",
                size=GROUPS_PAGE,
                pin={"end": end} if end else None,
            ),
            "group_by": group_by,
            "groupings": sorted(GROUPINGS),
            "totals": usage_summary(organization_id=organization.pk, filters=filters),
            "errors": errors,
            "params": params,
            "query_string": urlencode(kept),
            # The request log's pages keep the page of groups shown.
            "log_query_string": urlencode(kept | _groups_page(request)),
            # Only inference keys send requests; management keys would filter to nothing.
            "keys": _key_choices(organization, filters.key_id),
            "models": _model_choices(organization.pk, filters),
            "statuses": UsageStatus.choices,
        },
    )


@require_POST
@organization_required(Role.OWNER)
def credits_buy(request: HttpRequest) -> HttpResponse:
    """Start a top-up from the dashboard and send the owner to the payment page."""
    from billing.stripe.payments import checkout_start

    membership = dashboard_membership(request)
    try:
        amount = Decimal(request.POST.get("amount", ""))
    except InvalidOperation:
        messages.error(request, "Enter the amount of credits in USD, e.g. 20.")
        return redirect("credits")
    try:
        started = checkout_start(
            organization=membership.organization, amount=amount, created_by=membership.user
        )
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("credits")
    return redirect(started.checkout_url)


@organization_required()
def overview_page(request: HttpRequest) -> HttpResponse:
    """Balance, this month's spend and requests, the 30-day chart and a quickstart."""
    organization = dashboard_organization(request)
    account = CreditAccount.objects.for_tenant(organization).first()
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    totals = usage_summary(organization_id=organization.pk, filters=UsageFilter(start=month_start))
    return render(
        request,
        "billing/overview.html",
        {
            "balance": account.balance if account else ZERO,
            "month_cost": totals["cost"] or ZERO,
            "month_requests": totals["requests"],
            "active_keys": ApiKey.objects.filter(
                organization=organization, revoked_at__isnull=True
            ).count(),
            "chart": spend_chart_for(organization.pk),
        },
    )
