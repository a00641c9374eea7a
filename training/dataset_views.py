"""Dataset pages' actions beyond upload: "Train a router" straight from a ready dataset, and the
catalog ids the column-mapping UI suggests from (``training/static/training/mapping.js``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from accounts.models import Organization, Role
from accounts.tenancy import dashboard_organization, organization_required, tenant_object_or_404
from routerhub.errors import ApiError
from routerhub.text import validate_no_control_characters
from training import services
from training.models import Dataset, DatasetStatus, Router, TrainingRun


def catalog_ids() -> list[str]:
    """The catalog's model ids (routing's catalog, reached through a setting like the check)."""
    ids: Callable[[], list[str]] = import_string(settings.MODEL_CATALOG_IDS)
    return ids()


class TrainFromDatasetForm(forms.Form):
    slug = forms.SlugField(max_length=60, help_text="Requests name it as router/<slug>.")
    name = forms.CharField(
        max_length=120, required=False, validators=[validate_no_control_characters]
    )
    candidates = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, help_text="At least two of the dataset's models."
    )
    default_tradeoff = forms.FloatField(min_value=0, max_value=1, initial=0.5)

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        candidates = self.fields["candidates"]
        assert isinstance(candidates, forms.ChoiceField)  # form.fields holds Field
        candidates.choices = [(m, m) for m in dataset.model_ids]

    def clean_candidates(self) -> list[str]:
        chosen: list[str] = self.cleaned_data.get("candidates") or []
        if len(chosen) < 2:
            raise forms.ValidationError("Pick at least two models: a router chooses between them.")
        return chosen


def train_form_for(dataset: Dataset, unknown: dict[str, list[str]]) -> TrainFromDatasetForm:
    """The form with the dataset's catalog models ticked (ids outside the catalog cannot serve)."""
    servable = [m for m in dataset.model_ids if m not in unknown]
    slug = "".join(c if c.isalnum() else "-" for c in dataset.name.lower()).strip("-")[:50]
    return TrainFromDatasetForm(
        dataset,
        initial={"slug": f"{slug or 'router'}-router", "candidates": servable},
    )


@require_POST
@organization_required(Role.ADMIN)
def dataset_train(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Create a router over the chosen models of a ready dataset and start its first training."""
    organization = dashboard_organization(request)
    dataset = tenant_object_or_404(Dataset.objects, organization, pk=dataset_id)
    form = TrainFromDatasetForm(dataset, request.POST)
    if dataset.status != DatasetStatus.READY:
        form.add_error(None, f"The dataset is {dataset.status}; only a ready dataset trains.")
    if form.is_valid():
        try:
            with transaction.atomic():  # no router left behind when its training cannot start
                router, run = _router_and_run(organization, dataset, form.cleaned_data)
        except ApiError as exc:
            form.add_error("slug" if exc.param == "slug" else None, exc.message)
        else:
            messages.success(request, f"Router “{router.slug}” created; training started.")
            return redirect("training-run", run_id=run.pk)
    from training.views import dataset_context  # the page this form lives on (imports this)

    return render(request, "training/dataset.html", dataset_context(dataset, form), status=400)


def _router_and_run(
    organization: Organization, dataset: Dataset, data: dict[str, Any]
) -> tuple[Router, TrainingRun]:
    router = services.router_create(
        organization=organization,
        slug=data["slug"],
        name=data["name"] or data["slug"],
        candidates=data["candidates"],
        default_tradeoff=data["default_tradeoff"],
    )
    return router, services.training_run_start(router=router, dataset=dataset)
