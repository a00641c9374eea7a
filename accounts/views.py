"""Dashboard pages for accounts: overview, API keys, organization and members, invitations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from accounts import invitations, key_lineage, services
from accounts.models import (
    ApiKey,
    Invitation,
    KeyScope,
    LimitReset,
    MailStatus,
    Membership,
    Organization,
    Role,
    User,
)
from accounts.serializers import ApiKeyCreateInput
from accounts.tenancy import (
    dashboard_membership,
    dashboard_organization,
    organization_required,
    tenant_object_or_404,
)
from routerhub.api_forms import ApiCheckedForm
from routerhub.domain import NotPermitted
from routerhub.errors import ApiError
from routerhub.pages import dashboard_page
from routerhub.row_update import row_update
from routerhub.text import decimal_number, validate_no_control_characters

View = Callable[..., HttpResponse]


def _person(request: HttpRequest) -> User:
    """The signed-in user (views using it are behind ``login_required``)."""
    assert isinstance(request.user, User)
    return request.user


class KeyForm(ApiCheckedForm):
    """The API's ``POST /api/v1/keys`` as a form; ``ApiKeyCreateInput`` checks its limits."""

    name = forms.CharField(max_length=120, validators=[validate_no_control_characters])
    scope = forms.ChoiceField(choices=KeyScope.choices, initial=KeyScope.INFERENCE)
    limit = forms.DecimalField(
        required=False, min_value=0, max_digits=20, decimal_places=8, label="Credit limit (USD)"
    )
    limit_reset = forms.ChoiceField(
        choices=[("", "Never resets"), *LimitReset.choices], required=False
    )
    expires_at = forms.DateTimeField(required=False, help_text="YYYY-MM-DD HH:MM (UTC)")
    rpm = forms.IntegerField(required=False, min_value=1, label="Requests per minute")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tokens per minute")
    allowed_models = forms.CharField(
        required=False, help_text="Comma-separated model ids; empty allows every model."
    )
    budget_aware = forms.BooleanField(
        required=False,
        label="Budget-aware routing",
        help_text="With a credit limit: router requests move toward cheaper models as the "
        "window fills, instead of only being refused at the cap.",
    )

    def clean_allowed_models(self) -> list[str]:
        raw = self.cleaned_data.get("allowed_models") or ""
        return [m.strip() for m in raw.split(",") if m.strip()]

    def clean_limit_reset(self) -> str | None:
        return self.cleaned_data.get("limit_reset") or None

    def api_input(self) -> type[ApiKeyCreateInput]:
        return ApiKeyCreateInput


@organization_required()
def keys_page(request: HttpRequest) -> HttpResponse:
    membership = dashboard_membership(request)
    organization = membership.organization
    form = KeyForm()
    created = None
    if request.method == "POST":
        if not membership.has_role(Role.ADMIN):
            raise PermissionDenied("Creating keys needs the admin role.")
        form = KeyForm(request.POST)
        if form.is_valid():
            created = services.api_key_create(
                organization=organization, created_by=_person(request), **form.cleaned_data
            )
            form = KeyForm()
    keys = dashboard_page(
        request,
        ApiKey.objects.for_tenant(organization)
        .select_related("created_by", "created_by_key")
        .order_by(F("revoked_at").asc(nulls_first=True), "-created_at", "-id"),
    )
    spend = import_string(settings.KEY_SPEND)(
        organization_id=organization.pk, key_ids=[key.pk for key in keys]
    )
    for key in keys:
        # `spend` is not a field of ApiKey; the Keys page reads it from the instance (accounts
        # does not import billing, settings.KEY_SPEND computes it).
        key.spend = spend.get(key.pk)
    return render(
        request,
        "accounts/keys.html",
        {
            "form": form,
            "keys": keys,
            "created": created,
            "can_manage": membership.has_role(Role.ADMIN),
        },
    )


@require_POST
@organization_required(Role.ADMIN)
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    organization = dashboard_organization(request)
    key = tenant_object_or_404(ApiKey.objects, organization, pk=key_id)
    key_lineage.api_key_revoke(key=key)
    messages.success(
        request,
        f"Key “{key.name}” revoked, with the keys made with it. Requests using them now get 401.",
    )
    return redirect("keys")


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


# Why the ignore below: ModelForm is generic only in django-stubs (not subscriptable at run time).
class OrganizationSettingsForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Organization
        fields = ["name", "prompt_logging", "monthly_budget", "budget_aware_routing"]
        labels = {
            "prompt_logging": "Keep prompts of served requests",
            "monthly_budget": "Monthly budget (USD)",
            "budget_aware_routing": "Budget-aware routing for every key",
        }
        help_texts = {
            "prompt_logging": "Needed to turn feedback into training data. Off by default.",
            "monthly_budget": "Owners get an email at 50%, 80% and 100% of it.",
            "budget_aware_routing": "Keys with a credit limit route router/<slug> requests "
            "toward cheaper models as their window fills.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each field carries the value the page showed (``initial-<name>``): what the person
        # changed is what differs from it, not from the row as it is now (a concurrent change to
        # another setting is not undone by a form that still shows the old value).
        for field in self.fields.values():
            field.show_hidden_initial = True


@require_POST
@organization_required(Role.OWNER)
def organization_settings(request: HttpRequest) -> HttpResponse:
    organization = dashboard_organization(request)
    form = OrganizationSettingsForm(request.POST, instance=organization)
    if form.is_valid():
        # Only what the person changed, on the locked row: a concurrent change to another
        # setting (or column) stays (``form.save()`` wrote back the whole row it read).
        row_update(
            organization,
            changes={field: form.cleaned_data[field] for field in form.changed_data},
            fields=OrganizationSettingsForm.Meta.fields,
        )
        messages.success(request, "Settings saved.")
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")
    return redirect("organization")


class OrganizationForm(forms.Form):
    name = forms.CharField(
        max_length=120, label="New organization name", validators=[validate_no_control_characters]
    )


def _invited_message(created: invitations.CreatedInvitation) -> str:
    email = created.invitation.email
    if created.queued:
        return (
            f"Invitation to {email} created; its email is on its way (its state shows under "
            "Pending invitations)."
        )
    mail = (
        "its link (no new email) admits with it."
        if created.invitation.mail_status == MailStatus.SENT
        else "its email, still on its way, carries it."
    )
    role = created.invitation.get_role_display().lower()
    return f"The open invitation to {email} now has the role {role}; {mail}"


@organization_required()
def organization_page(request: HttpRequest) -> HttpResponse:
    membership = dashboard_membership(request)
    organization = membership.organization
    invite_form = InviteForm()
    if request.method == "POST":
        if not membership.has_role(Role.OWNER):
            raise PermissionDenied("Managing members needs the owner role.")
        invite_form = InviteForm(request.POST)
        if invite_form.is_valid():
            try:
                created = invitations.invitation_create(
                    organization=organization,
                    invited_by=_person(request),
                    **invite_form.cleaned_data,
                )
            except ApiError as exc:
                invite_form.add_error("email", exc.message)
            else:
                messages.success(request, _invited_message(created))
                return redirect("organization")
    members = Membership.objects.for_tenant(organization).select_related("user")
    pending = Invitation.objects.for_tenant(organization).filter(
        accepted_at__isnull=True, cancelled_at__isnull=True
    )
    return render(
        request,
        "accounts/organization.html",
        {
            "invite_form": invite_form,
            "org_form": OrganizationForm(),
            "settings_form": OrganizationSettingsForm(instance=organization),
            "members": dashboard_page(
                request, members.order_by("created_at", "id"), param="members_page"
            ),
            "invitations": dashboard_page(
                request, pending.order_by("-created_at", "-id"), param="invitations_page"
            ),
            "my_organizations": dashboard_page(
                request,
                Membership.objects.filter(user=membership.user)
                .select_related("organization")
                .order_by("organization__name", "organization_id"),
                param="organizations_page",
            ),
            "is_owner": membership.has_role(Role.OWNER),
            "roles": Role.choices,
        },
    )


@require_POST
@organization_required(Role.OWNER)
def member_update(request: HttpRequest, membership_id: int) -> HttpResponse:
    organization = dashboard_organization(request)
    try:
        if request.POST.get("action") == "remove":
            services.membership_remove(organization=organization, membership_id=membership_id)
            messages.success(request, "Member removed.")
        else:
            role = request.POST.get("role", "")
            if role not in Role.values:
                raise Http404
            services.membership_set_role(
                organization=organization, membership_id=membership_id, role=role
            )
            messages.success(request, "Role updated.")
    except ApiError as exc:
        if exc.status == 404:
            raise Http404 from exc
        messages.error(request, exc.message)
    return redirect("organization")


@require_POST
@organization_required(Role.OWNER)  # who may invite may cancel
def invitation_cancel(request: HttpRequest, invitation_id: int) -> HttpResponse:
    organization = dashboard_organization(request)
    try:
        invitation = invitations.invitation_cancel(
            organization=organization, invitation_id=invitation_id
        )
    except ApiError as exc:
        if exc.status == 404:
            raise Http404 from exc
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Invitation to {invitation.email} cancelled.")
    return redirect("organization")


@require_POST
@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(request.POST)
    if not form.is_valid():
        if form.has_error("name", "required"):
            messages.error(request, "Give the organization a name.")
        else:
            messages.error(request, " ".join(str(e) for e in form.errors["name"]))
        return redirect("organization")
    try:
        organization = services.organization_create(
            name=form.cleaned_data["name"], owner=_person(request)
        )
    except NotPermitted as exc:
        messages.error(request, exc.message)
        return redirect("organization")
    request.session[settings.ORGANIZATION_SESSION_KEY] = organization.pk
    messages.success(request, f"Created {organization.name}; you are its owner.")
    return redirect("organization")


@require_POST
@login_required
def organization_switch(request: HttpRequest) -> HttpResponse:
    chosen = request.POST.get("organization", "")
    membership = Membership.objects.filter(
        user=_person(request), organization_id=decimal_number(chosen) or 0
    ).first()
    if membership is None:
        raise Http404
    request.session[settings.ORGANIZATION_SESSION_KEY] = membership.organization_id
    after = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        after, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect("dashboard")  # never off-site (javascript:, //host, https://host)
    return redirect(after)


@login_required
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":
        return render(request, "accounts/invitation.html", {"token": token})
    try:
        membership = invitations.invitation_accept(token=token, user=_person(request))
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard")
    request.session[settings.ORGANIZATION_SESSION_KEY] = membership.organization_id
    messages.success(request, f"Welcome to {membership.organization.name}.")
    return redirect("dashboard")
