"""Dashboard pages of pipelines: the organization's list, one pipeline's steps drawn as boxes and
arrows, its versions, its cascade report beside a router's curve, and (admins) the forms that
create a pipeline or post a new version. Definitions go through the API's validation
(``routing.pipeline_api``), whose message is shown next to the JSON editor."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.models import Organization, Role
from accounts.tenancy import dashboard_membership, dashboard_organization, organization_required
from accounts.tenancy import tenant_object_or_404 as owned
from routerhub.body_limits import JSON_TOO_DEEP, MAX_JSON_DEPTH, nested_deeper_than
from routerhub.errors import ApiError
from routerhub.pages import dashboard_page
from routerhub.text import validate_no_control_characters
from routing.models import Pipeline, PipelineKind
from routing.pipeline_api import (
    pipeline_create,
    pipeline_definition,
    pipeline_report,
    pipeline_version_add,
)
from routing.pipeline_diagram import pipeline_diagram
from routing.views import ROUTER_CHOICES
from training.serving import Router, cost_quality_svg

EXAMPLE = """{"kind": "cascade", "steps": [
  {"model": "demo/small", "gate": {"type": "non_empty"}},
  {"model": "demo/large"}
]}"""


class DefinitionForm(forms.Form):
    definition = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "class": "code"}),
        max_length=64_000,
        help_text='JSON {"kind": "cascade" | "series", "steps": [...]}, as POST /api/v1/pipelines '
        "takes it (README, Pipelines).",
    )

    def clean_definition(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["definition"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from exc
        except RecursionError as exc:
            raise forms.ValidationError(JSON_TOO_DEEP) from exc
        if nested_deeper_than(None, value, MAX_JSON_DEPTH):
            raise forms.ValidationError(JSON_TOO_DEEP)
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object {kind, steps}.")
        return value


class PipelineForm(DefinitionForm):
    slug = forms.SlugField(max_length=60, help_text="Called as model pipeline/<slug>.")
    name = forms.CharField(
        max_length=120, required=False, validators=[validate_no_control_characters]
    )
    field_order = ("slug", "name", "definition")


def _can_manage(request: HttpRequest) -> bool:
    return dashboard_membership(request).has_role(Role.ADMIN)


def _require_admin(request: HttpRequest) -> None:
    if not _can_manage(request):
        raise PermissionDenied("This action needs the admin role.")


def _api_error_on(form: forms.Form, exc: ApiError) -> None:
    form.add_error(
        "slug" if exc.param == "slug" and "slug" in form.fields else "definition", exc.message
    )


@organization_required()
def pipelines_page(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    form = PipelineForm(initial={"definition": EXAMPLE})
    if request.method == "POST":
        _require_admin(request)
        form = PipelineForm(request.POST)
        if form.is_valid():
            values = form.cleaned_data
            try:
                pipeline = pipeline_create(
                    organization,
                    slug=values["slug"],
                    name=values["name"],
                    definition=values["definition"],
                )
            except ApiError as exc:
                _api_error_on(form, exc)
            else:
                messages.success(request, f"Created pipeline/{pipeline.slug} (version 1).")
                return redirect("pipeline", pipeline_slug=pipeline.slug)
    pipelines = Pipeline.objects.for_tenant(organization).select_related("active_version")
    return render(
        request,
        "routing/pipelines.html",
        {
            "form": form,
            "pipelines": dashboard_page(request, pipelines.order_by("slug")),
            "can_manage": _can_manage(request),
        },
    )


@organization_required()
def pipeline_page(request: HttpRequest, pipeline_slug: str) -> HttpResponse:
    organization = dashboard_organization(request)
    queryset = Pipeline.objects.select_related("active_version")
    pipeline = owned(queryset, organization, slug=pipeline_slug)
    version = pipeline.active_version
    current = {"kind": version.kind, "steps": version.steps} if version else {}
    form = DefinitionForm(initial={"definition": json.dumps(current, indent=1)})
    if request.method == "POST":
        _require_admin(request)
        form = DefinitionForm(request.POST)
        if form.is_valid():
            try:
                kind, steps, options = pipeline_definition(
                    organization, form.cleaned_data["definition"]
                )
            except ApiError as exc:
                _api_error_on(form, exc)
            else:
                added = pipeline_version_add(pipeline, kind, steps, options)
                messages.success(request, f"Version {added.number} is active.")
                return redirect("pipeline", pipeline_slug=pipeline.slug)
    return render(
        request,
        "routing/pipeline.html",
        {
            "pipeline": pipeline,
            "version": version,
            "diagram": pipeline_diagram(version.kind, version.steps) if version else None,
            "versions": dashboard_page(
                request, pipeline.versions.order_by("-number"), param="versions_page"
            ),
            "form": form,
            "can_manage": _can_manage(request),
            **_report_context(request, organization, pipeline),
        },
    )


def _report_context(
    request: HttpRequest, organization: Organization, pipeline: Pipeline
) -> dict[str, Any]:
    """The cascade report of the page: the router asked for (``?router=``) or the one the
    pre-call gates name, else the first trained router; its reason when there is none."""
    version = pipeline.active_version
    if version is None or version.kind != PipelineKind.CASCADE:
        return {}
    trained = Router.objects.for_tenant(organization).filter(active_version__isnull=False)
    # The menu: the ROUTER_CHOICES most recently activated (an organization may have thousands)
    # and the one shown, by slug; ?router= names any other.
    newest = trained.order_by(F("activated_at").desc(nulls_last=True), "slug")
    slugs = list(newest.values_list("slug", flat=True)[:ROUTER_CHOICES])
    named = [s["pre_gate"]["router"] for s in version.steps if s.get("pre_gate")]
    chosen = request.GET.get("router", "")[:60] or (named[0] if named else "")
    chosen = chosen or (slugs[0] if slugs else "")
    if chosen and chosen not in slugs and trained.filter(slug=chosen).exists():
        slugs.append(chosen)
    slugs.sort()
    context: dict[str, Any] = {"report_routers": slugs, "report_router": chosen}
    if not chosen:
        context["report_error"] = "Train a router on a dataset with these steps' models first."
        return context
    try:
        report = pipeline_report(organization, pipeline, chosen)
    except ApiError as exc:
        context["report_error"] = exc.message
        return context
    routed = {"curve": report["router_curve"], "models": report["models"]}
    context["report"] = report
    context["report_chart"] = cost_quality_svg(routed, cascade=report["curve"])
    return context
