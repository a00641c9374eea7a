"""The dashboard's router lifecycle page: the running experiment's live report and chart, its
settings, the audit log and the one-click rollback (``/dashboard/routers/<slug>/lifecycle``)."""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from accounts.models import Role
from accounts.tenancy import (
    dashboard_membership,
    dashboard_organization,
    organization_required,
    tenant_object_or_404,
)
from routerhub.api_forms import ApiCheckedForm
from routerhub.errors import ApiError
from routing.lifecycle_report import experiment_report
from training import serving
from training.serving import Router, RouterEvent

PROMOTIONS = [("never", "Never promote automatically"), ("if_better", "Promote if better")]


class LifecycleForm(ApiCheckedForm):
    """One experiment at a time: a shadow version or an A/B challenger (blank: none). The API's
    ``LifecycleInput`` checks it (``serving.lifecycle_input``)."""

    shadow_version = forms.IntegerField(required=False, min_value=1)
    shadow_share = forms.FloatField(min_value=0, max_value=1)
    challenger_version = forms.IntegerField(required=False, min_value=1, label="A/B challenger")
    challenger_share = forms.FloatField(min_value=0, max_value=1, label="A/B share")
    exploration_rate = forms.FloatField(min_value=0, max_value=1)
    promotion = forms.ChoiceField(choices=PROMOTIONS)
    promotion_min_decisions = forms.IntegerField(min_value=10, label="Decisions before promoting")

    def api_input(self) -> type[Any]:
        return serving.lifecycle_input()


def _router(request: HttpRequest, slug: str) -> Router:
    routers = Router.objects.select_related(
        "active_version", "shadow_version", "challenger_version"
    )
    return tenant_object_or_404(routers, dashboard_organization(request), slug=slug)


def _initial(router: Router) -> dict[str, Any]:
    shadow, challenger = router.shadow_version, router.challenger_version
    return {
        "shadow_version": shadow.number if shadow else None,
        "shadow_share": router.shadow_share,
        "challenger_version": challenger.number if challenger else None,
        "challenger_share": router.challenger_share,
        "exploration_rate": router.exploration_rate,
        "promotion": router.promotion,
        "promotion_min_decisions": router.promotion_min_decisions,
    }


def _actor(request: HttpRequest) -> str:
    return f"user:{getattr(request.user, 'email', '?')}"


@organization_required()
def router_lifecycle_page(request: HttpRequest, slug: str) -> HttpResponse:
    router = _router(request, slug)
    form = LifecycleForm(initial=_initial(router))
    if request.method == "POST":
        if not dashboard_membership(request).has_role(Role.ADMIN):
            return HttpResponse(status=403)
        form = LifecycleForm(request.POST)
        if form.is_valid():
            try:
                serving.router_lifecycle_update(
                    router=router, changes=form.cleaned_data, actor=_actor(request)
                )
            except ApiError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Lifecycle settings saved.")
                return redirect("router-lifecycle", slug=slug)
    report = experiment_report(router)
    return render(
        request,
        "routing/router_lifecycle.html",
        {
            "router": router,
            "report": report,
            "chart": experiment_chart_svg(report),
            "events": RouterEvent.objects.filter(router=router).order_by("-created_at")[:50],
            "form": form,
            "can_manage": dashboard_membership(request).has_role(Role.ADMIN),
        },
    )


@require_POST
@organization_required(Role.ADMIN)
def router_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    router = _router(request, slug)
    try:
        rolled = serving.router_rollback(router=router, actor=_actor(request))
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        number = rolled.active_version.number if rolled.active_version else None
        messages.success(request, f"Rolled back: version {number} serves “{router.slug}”.")
    return redirect("router-lifecycle", slug=slug)


def _bar(row: int, label: str, entry: dict[str, Any], scale: float) -> SafeString:
    """One estimate as a dot with its 95% interval, on a 0..``scale`` axis 400 px wide."""

    def x(value: float) -> float:
        bounded = min(max(value if math.isfinite(value) else 0.0, 0.0), scale)
        return round(160 + 400 * bounded / scale, 1)

    y = 20 + row * 26
    low, high, value = entry["low"], entry["high"], entry["estimate"]
    return format_html(
        '<text x="0" y="{}">{}</text><line x1="{}" x2="{}" y1="{}" y2="{}" class="ci"/>'
        '<circle cx="{}" cy="{}" r="4"/><text x="570" y="{}">{}</text>',
        y + 4,
        label,
        x(low),
        x(high),
        y,
        y,
        x(value),
        y,
        y + 4,
        f"{value:.4g} [{low:.3g}, {high:.3g}]" if math.isfinite(value) else "no data",
    )


def experiment_chart_svg(report: dict[str, Any]) -> SafeString:
    """Each version's estimated score and expected cost with their 95% intervals."""
    versions = report.get("versions") or []
    if not versions:
        return SafeString("")
    cost_scale = max((v["cost"]["estimate"] for v in versions), default=0.0) * 2 or 1.0
    rows = []
    for v in versions:
        rows.append(("score", f"v{v['version']} score", v["score"], 1.0))
        rows.append(("cost", f"v{v['version']} cost $", v["cost"], cost_scale))
    bars = format_html_join(
        "", "{}", ((_bar(i, label, e, scale),) for i, (_, label, e, scale) in enumerate(rows))
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 760 {}" role="img" '
        'aria-label="Estimated score and cost of each version" '
        'xmlns="http://www.w3.org/2000/svg">{}</svg>',
        30 + 26 * len(rows),
        bars,
    )
