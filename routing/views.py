"""Dashboard pages of the routing app: the model catalog, the playground, provider keys."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Role
from accounts.tenancy import (
    dashboard_membership,
    dashboard_organization,
    organization_required,
    tenant_object_or_404,
)
from billing.models import UsageRecord
from routerhub.api_forms import ApiCheckedForm
from routerhub.errors import ApiError
from routerhub.pages import dashboard_page
from routerhub.text import decimal_number, validate_no_control_characters
from routing.feedback import feedback_record, feedback_retrain
from routing.model_stats import WINDOW, provider_stats
from routing.models import Provider, ProviderKey
from routing.routers import PLATFORM_ROUTER_SLUG
from routing.selectors import catalog_models_list, models_callable_by
from routing.serializers import ProviderKeyCreateInput
from routing.services import provider_key_create, provider_key_delete
from training.serving import DEFAULT_OUTPUT_TOKENS, Router


@login_required
def models_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:100]
    measured = [s for s in provider_stats() if query.lower() in s.model.lower()]
    return render(
        request,
        "routing/models.html",
        {
            "models": catalog_models_list(query=query),
            "query": query,
            "measured": measured,
            "window_days": WINDOW.days,
        },
    )


ROUTER_CHOICES = 50


@organization_required()
def playground_page(request: HttpRequest) -> HttpResponse:
    """Chat with any model or router, or compare up to three, as the signed-in person
    (``routing.playground`` serves the requests)."""
    organization = dashboard_organization(request)
    # The menu's routers: the ROUTER_CHOICES most recently activated (an organization may have
    # thousands), by slug.
    newest = Router.objects.for_tenant(organization).order_by(
        F("activated_at").desc(nulls_last=True), "slug"
    )
    routers = sorted(newest[:ROUTER_CHOICES], key=lambda router: router.slug)
    # Embedding models answer /v1/embeddings only: the playground chats.
    models = [m for m in catalog_models_list(query="") if "embeddings" not in m.capabilities]
    callable_ids = models_callable_by(organization_id=organization.pk)
    trained = [f"router/{r.slug}" for r in routers if r.active_version_id]
    callable_models = [m.id for m in models if m.id in callable_ids]
    first_two = [*trained, *callable_models, "", ""][:2]
    compare_defaults = [*first_two, ""]  # the third column starts empty (optional)
    return render(
        request,
        "routing/playground.html",
        {
            "models": [m for m in models if m.id in callable_ids],
            "models_without_key": [m for m in models if m.id not in callable_ids],
            "routers": routers,
            "platform_router": PLATFORM_ROUTER_SLUG,
            "typical_reply_tokens": DEFAULT_OUTPUT_TOKENS,
            "compare_defaults": compare_defaults,
        },
    )


class ProviderKeyForm(ApiCheckedForm):
    """The API's ``POST /api/v1/provider-keys`` as a form; ``ProviderKeyCreateInput`` checks it."""

    provider = forms.ModelChoiceField(
        queryset=Provider.objects.none(), empty_label=None, to_field_name="slug"
    )
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        label="Provider API key",
        help_text="Stored encrypted; never shown again. Used before RouterHub's own keys.",
    )
    name = forms.CharField(
        max_length=120, required=False, validators=[validate_no_control_characters]
    )
    base_url = forms.CharField(
        max_length=300,
        required=False,
        label="Base URL (optional)",
        help_text="OpenAI-compatible providers only: call your own host or proxy with this key, "
        "e.g. https://llm.example.com/v1. Public addresses only.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        queryset = Provider.objects.filter(enabled=True, is_simulated=False).order_by("name")
        provider = self.fields["provider"]
        assert isinstance(provider, forms.ModelChoiceField)  # form.fields holds Field
        provider.queryset = queryset

    def api_input(self) -> type[ProviderKeyCreateInput]:
        return ProviderKeyCreateInput

    def api_data(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        return {**cleaned, "provider": cleaned["provider"].slug}


@organization_required(Role.ADMIN)
def provider_keys_page(request: HttpRequest) -> HttpResponse:
    membership = dashboard_membership(request)
    organization = membership.organization
    form = ProviderKeyForm()
    if request.method == "POST":
        if request.POST.get("delete"):
            chosen = decimal_number(request.POST["delete"])
            if chosen is None:
                raise Http404
            key = tenant_object_or_404(ProviderKey.objects, organization, pk=chosen)
            provider_key_delete(key=key)
            messages.success(request, f"Removed your {key.provider.name} key.")
            return redirect("provider-keys")
        form = ProviderKeyForm(request.POST)
        if form.is_valid():
            try:
                provider_key_create(
                    organization=organization,
                    provider=form.cleaned_data["provider"],
                    secret=form.cleaned_data["secret"],
                    name=form.cleaned_data["name"],
                    base_url=form.cleaned_data["base_url"],
                    created_by=membership.user,
                )
            except ApiError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(request, "Key saved. Requests to that provider now use it first.")
                return redirect("provider-keys")
    keys = ProviderKey.objects.for_tenant(organization).select_related("provider")
    return render(
        request,
        "routing/provider_keys.html",
        {
            "form": form,
            "keys": dashboard_page(request, keys.order_by("provider__name", "id")),
            "byok_fee": settings.BYOK_FEE_RATE * 100,
        },
    )


@require_POST
@organization_required(Role.ADMIN)
def router_retrain_from_feedback(request: HttpRequest, slug: str) -> HttpResponse:
    """The dashboard's one click from feedback to a training run."""
    organization = dashboard_organization(request)
    routers = Router.objects.select_related("active_version", "organization")
    router = tenant_object_or_404(routers, organization, slug=slug)
    try:
        started = feedback_retrain(router=router)
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("training-router", slug=slug)
    messages.success(
        request,
        f"Building a dataset from {started.feedback_rows} feedback row(s) plus the previous "
        "data; training starts once it is built.",
    )
    for note in started.dataset.warnings:  # the version's options this retrain leaves out
        messages.warning(request, note)
    return redirect("training-run", run_id=started.run.pk)


_FEEDBACK_SCORES = {"good": 1.0, "bad": 0.0}


@require_POST
@organization_required()
def generation_feedback(request: HttpRequest, generation_id: str) -> HttpResponse:
    """Thumbs up or down on a generation, from its page or the playground (``score``: good or
    bad): the same feedback as ``POST /api/v1/feedback``, from the signed-in person. The
    playground asks for JSON; the generation page's form is redirected back to it."""
    organization = dashboard_organization(request)
    generation_id = generation_id[:64]
    if (
        not UsageRecord.objects.for_tenant(organization)
        .filter(generation_id=generation_id)
        .exists()
    ):
        raise Http404("No such generation in this organization.")
    score = _FEEDBACK_SCORES.get(str(request.POST.get("score", "")))
    if score is None:
        return HttpResponseBadRequest("score must be good or bad.")
    feedback = feedback_record(
        organization_id=organization.pk,
        generation_id=generation_id,
        score=score,
        key_id=None,
        user_id=request.user.pk,
    )
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"generation_id": generation_id, "score": feedback.score})
    messages.success(request, "Thanks: feedback recorded.")
    return redirect("generation", generation_id=generation_id)
