"""Dashboard pages for datasets, routers, training runs and version reports.

Pages work without JavaScript (plain form posts); ``training/static/training/training.js``
adds the upload progress bar and live run progress by calling the ``/api/v1`` endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from accounts.models import Organization, Role
from accounts.tenancy import (
    dashboard_membership,
    dashboard_organization,
    organization_required,
    tenant_object_or_404,
)
from routerhub.api_forms import ApiCheckedForm
from routerhub.body_limits import JSON_TOO_DEEP, MAX_JSON_DEPTH, nested_deeper_than
from routerhub.errors import ApiError
from routerhub.pages import dashboard_page
from routerhub.text import validate_no_control_characters
from training import lifecycle, services
from training.charts import cost_quality_svg, drift_svg
from training.dataset_views import catalog_ids, train_form_for
from training.models import (
    STAGE_LABELS,
    Dataset,
    DatasetStatus,
    Router,
    RouterEventKind,
    RouterVersion,
    TrainingRun,
)
from training.serializers import RouterInput

DRIFT_CHECKS_SHOWN = 60
DATASET_CHOICES = 50


# Why the ignore below: the stubs make ModelChoiceIterator generic; Django's class is not
# subscriptable at run time.
class NewestChoices(forms.models.ModelChoiceIterator):  # type: ignore[type-arg]
    """A dataset menu of the newest ``DATASET_CHOICES`` (one query), not every dataset."""

    def __iter__(self) -> Any:
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for dataset in self.queryset[:DATASET_CHOICES]:
            yield self.choice(dataset)

    def __len__(self) -> int:
        return min(self.queryset.count(), DATASET_CHOICES) + (self.field.empty_label is not None)


def _catalog_unknown_ids(model_ids: list[str]) -> dict[str, list[str]]:
    """Model ids that are not catalog models, with similar catalog ids (routing's catalog)."""
    check: Callable[[list[str]], dict[str, list[str]]] = import_string(settings.MODEL_CATALOG_CHECK)
    return check(model_ids)


def _require_admin(request: HttpRequest) -> None:
    if not dashboard_membership(request).has_role(Role.ADMIN):
        raise PermissionDenied("This action needs the admin role.")


class DatasetUploadForm(forms.Form):
    file = forms.FileField(help_text="CSV, JSONL or Parquet, one row per prompt.")
    name = forms.CharField(
        max_length=200, required=False, validators=[validate_no_control_characters]
    )
    columns = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='Optional JSON mapping catalog ids to your columns, e.g. {"prompt": "prompt", '
        '"scores": {"openai/gpt-4o": "gpt4_correct"}}. '
        "Leave empty for '<model>/score' columns.",
    )
    maximize = forms.BooleanField(
        required=False, initial=True, help_text="Higher scores are better."
    )

    def clean_columns(self) -> dict[str, Any]:
        raw = (self.cleaned_data.get("columns") or "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg}.") from exc
        except RecursionError as exc:
            raise forms.ValidationError(JSON_TOO_DEEP) from exc
        if nested_deeper_than(None, value, MAX_JSON_DEPTH):
            raise forms.ValidationError(JSON_TOO_DEEP)
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return value


class RouterForm(ApiCheckedForm):
    """The API's ``POST /api/v1/routers`` as a form; ``RouterInput`` checks its candidates."""

    slug = forms.SlugField(max_length=60)
    name = forms.CharField(
        max_length=120, required=False, validators=[validate_no_control_characters]
    )
    candidates = forms.CharField(
        required=False,
        help_text="Comma-separated model ids; empty takes every model of the dataset.",
    )
    default_tradeoff = forms.FloatField(min_value=0, max_value=1, initial=0.5)
    auto_activate = forms.BooleanField(required=False, help_text="Serve each new version at once.")

    def clean_candidates(self) -> list[str]:
        raw = self.cleaned_data.get("candidates") or ""
        return [c.strip() for c in raw.split(",") if c.strip()]

    def api_input(self) -> type[RouterInput]:
        return RouterInput


class TrainForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        help_text="The newest ready datasets; train on an older one from its own page.",
    )
    folds = forms.IntegerField(min_value=2, max_value=10, initial=5)
    test_dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        help_text="Optional: report on this dataset instead of cross-validation.",
    )

    def __init__(self, organization: Organization, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ready = Dataset.objects.for_tenant(organization).filter(status=DatasetStatus.READY)
        for name in ("dataset", "test_dataset"):
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)  # form.fields holds Field
            # Any ready dataset is accepted; the menu lists the newest DATASET_CHOICES of them
            # (an older one is trained from its own page).
            field.iterator = NewestChoices
            field.queryset = ready.order_by("-created_at", "-id")


@organization_required()
def datasets_page(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    form = DatasetUploadForm()
    if request.method == "POST":
        _require_admin(request)
        form = DatasetUploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                dataset = services.dataset_create(
                    organization=organization,
                    name=form.cleaned_data["name"] or upload.name,
                    upload=upload,
                    columns=form.cleaned_data["columns"],
                    maximize=form.cleaned_data["maximize"],
                )
            except ApiError as exc:
                form.add_error("file", exc.message)
            else:
                return redirect("training-dataset", dataset_id=dataset.pk)
    datasets = dashboard_page(
        request, Dataset.objects.for_tenant(organization).order_by("-created_at", "-id")
    )
    return render(
        request,
        "training/datasets.html",
        {
            "form": form,
            "datasets": datasets,
            "can_manage": dashboard_membership(request).has_role(Role.ADMIN),
            "catalog_ids": catalog_ids(),
        },
    )


def _dataset(request: HttpRequest, dataset_id: int) -> Dataset:
    dataset: Dataset = tenant_object_or_404(
        Dataset.objects, dashboard_organization(request), pk=dataset_id
    )
    return dataset


def dataset_context(dataset: Dataset, train_form: Any = None) -> dict[str, Any]:
    unknown = _catalog_unknown_ids(dataset.model_ids)
    return {
        "dataset": dataset,
        "unknown": unknown,
        "train_form": train_form or train_form_for(dataset, unknown),
    }


@organization_required()
def dataset_page(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(request, dataset_id)
    context = dataset_context(dataset)
    context["can_manage"] = dashboard_membership(request).has_role(Role.ADMIN)
    return render(request, "training/dataset.html", context)


@require_POST
@organization_required(Role.ADMIN)
def dataset_delete(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _dataset(request, dataset_id)
    try:
        services.dataset_delete(dataset=dataset)
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("training-dataset", dataset_id=dataset_id)
    messages.success(request, f"Dataset “{dataset.name}” deleted.")
    return redirect("training-datasets")


@organization_required()
def routers_page(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    form = RouterForm()
    if request.method == "POST":
        _require_admin(request)
        form = RouterForm(request.POST)
        if form.is_valid():
            try:
                router = services.router_create(
                    organization=organization,
                    slug=form.cleaned_data["slug"],
                    name=form.cleaned_data["name"] or form.cleaned_data["slug"],
                    candidates=form.cleaned_data["candidates"],
                    default_tradeoff=form.cleaned_data["default_tradeoff"],
                    auto_activate=form.cleaned_data["auto_activate"],
                )
            except ApiError as exc:
                form.add_error("slug", exc.message)
            else:
                unknown = _catalog_unknown_ids(router.candidates)
                if unknown:
                    messages.warning(
                        request,
                        f"Router created, but {', '.join(unknown)} "
                        f"{'is not a catalog model' if len(unknown) == 1 else 'are not catalog models'}"
                        ": requests routed to them will fail. See the suggestions below.",
                    )
                return redirect("training-router", slug=router.slug)
    routers = Router.objects.for_tenant(organization).select_related("active_version")
    return render(
        request,
        "training/routers.html",
        {
            "form": form,
            "routers": dashboard_page(request, routers.order_by("slug")),
            "can_manage": dashboard_membership(request).has_role(Role.ADMIN),
        },
    )


def _router(request: HttpRequest, slug: str) -> Router:
    routers = Router.objects.select_related("active_version")
    return tenant_object_or_404(routers, dashboard_organization(request), slug=slug)


def _drift_context(router: Router) -> dict[str, Any]:
    """The last checks' chart and, when the latest is above its threshold, the retrain hint."""
    checks = list(
        router.drift_checks.select_related("version").order_by("-checked_at")[:DRIFT_CHECKS_SHOWN]
    )[::-1]
    points = [
        (f"{c.checked_at:%Y-%m-%d %H:%M} v{c.version.number}", c.score, c.above_threshold)
        for c in checks
    ]
    return {
        "drift_chart": drift_svg(points, settings.DRIFT_THRESHOLD),
        "drift_latest": checks[-1] if checks else None,
    }


@organization_required()
def router_page(request: HttpRequest, slug: str) -> HttpResponse:
    router = _router(request, slug)
    organization = dashboard_organization(request)
    form = TrainForm(organization)
    if request.method == "POST":
        _require_admin(request)
        form = TrainForm(organization, request.POST)
        if form.is_valid():
            options: dict[str, Any] = {"folds": form.cleaned_data["folds"]}
            if form.cleaned_data["test_dataset"] is not None:
                options["test_dataset"] = form.cleaned_data["test_dataset"].pk
            try:
                run = services.training_run_start(
                    router=router, dataset=form.cleaned_data["dataset"], options=options
                )
            except ApiError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("training-run", run_id=run.pk)
    active = router.active_version
    return render(
        request,
        "training/router.html",
        {
            **_drift_context(router),
            "router": router,
            "form": form,
            # The report and drift reference (large JSON) are the version page's, not this list's.
            "versions": dashboard_page(
                request,
                router.versions.defer("report", "drift_reference").order_by("-number"),
                param="versions_page",
            ),
            "runs": router.runs.select_related("dataset", "version").order_by("-created_at")[:20],
            "chart": cost_quality_svg(active.report) if active else "",
            "active": active,
            "unknown": _catalog_unknown_ids(
                router.candidates or (active.candidates if active else [])
            ),
            "can_manage": dashboard_membership(request).has_role(Role.ADMIN),
        },
    )


@require_POST
@organization_required(Role.ADMIN)
def version_activate(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    router = _router(request, slug)
    try:
        lifecycle.version_switch(
            router=router,
            number=number,
            kind=RouterEventKind.ACTIVATED,
            actor=f"user:{getattr(request.user, 'email', '?')}",
        )
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Version {number} of “{router.slug}” now serves requests.")
    return redirect("training-router", slug=slug)


@organization_required()
def version_page(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    router = _router(request, slug)
    version = RouterVersion.objects.filter(router=router, number=number).first()
    if version is None:
        raise Http404
    return render(
        request,
        "training/version.html",
        {
            "router": router,
            "version": version,
            "report": version.report,
            "chart": cost_quality_svg(version.report),
        },
    )


@organization_required()
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    runs = TrainingRun.objects.select_related("router", "dataset", "version")
    run = tenant_object_or_404(runs, dashboard_organization(request), pk=run_id)
    return render(
        request,
        "training/run.html",
        {
            "run": run,
            "can_manage": dashboard_membership(request).has_role(Role.ADMIN),
            "stage_labels": STAGE_LABELS,
        },
    )


@require_POST
@organization_required(Role.ADMIN)
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = tenant_object_or_404(TrainingRun.objects, dashboard_organization(request), pk=run_id)
    try:
        services.training_run_cancel(run=run)
    except ApiError as exc:
        messages.error(request, exc.message)
    return redirect("training-run", run_id=run_id)
