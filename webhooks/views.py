"""The Webhooks dashboard page: endpoints (created here with their secret shown once), their
deletion and enabling, and the latest deliveries (admins only)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import Role
from accounts.tenancy import dashboard_organization, organization_required, tenant_object_or_404
from routerhub.domain import NotFound
from routerhub.errors import ApiError
from routerhub.text import validate_no_control_characters
from webhooks import selectors, services
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

DELIVERIES_SHOWN = 50


class EndpointForm(forms.Form):
    url = forms.URLField(max_length=2000, label="Receiver URL", assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple
    )
    description = forms.CharField(
        max_length=200, required=False, validators=[validate_no_control_characters]
    )


@organization_required(Role.ADMIN)
def webhooks_page(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    form = EndpointForm()
    created = None
    if request.method == "POST":
        form = EndpointForm(request.POST)
        if form.is_valid():
            try:
                created = services.webhook_endpoint_create(
                    organization=organization, created_by=request.user, **form.cleaned_data
                )
                form = EndpointForm()
            except ApiError as exc:
                form.add_error(None, exc.message)
    endpoints = (
        WebhookEndpoint.objects.for_tenant(organization)
        .select_related("created_by")
        .order_by("-created_at")
    )
    deliveries = (
        selectors.deliveries_with_lost_hint(
            WebhookDelivery.objects.for_tenant(organization), now=timezone.now()
        )
        .select_related("endpoint")
        .order_by("-created_at", "-id")[:DELIVERIES_SHOWN]
    )
    return render(
        request,
        "webhooks/webhooks.html",
        {"form": form, "created": created, "endpoints": endpoints, "deliveries": deliveries},
    )


@require_POST
@organization_required(Role.ADMIN)
def webhook_toggle(request: HttpRequest, webhook_id: int) -> HttpResponse:
    endpoint = tenant_object_or_404(
        WebhookEndpoint.objects, dashboard_organization(request), pk=webhook_id
    )
    try:
        endpoint = services.webhook_endpoint_update(
            endpoint=endpoint, changes={"enabled": not endpoint.enabled}, actor=request.user
        )
    except NotFound as gone:  # deleted since it was read
        raise Http404(str(gone)) from gone
    messages.success(request, f"{endpoint.url} {'enabled' if endpoint.enabled else 'disabled'}.")
    return redirect("webhooks")


@require_POST
@organization_required(Role.ADMIN)
def webhook_delete(request: HttpRequest, webhook_id: int) -> HttpResponse:
    endpoint = tenant_object_or_404(
        WebhookEndpoint.objects, dashboard_organization(request), pk=webhook_id
    )
    endpoint.delete()
    messages.success(request, f"{endpoint.url} deleted; it receives no more events.")
    return redirect("webhooks")
