"""The Django admin, behind the same brute-force limits as the dashboard's login."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import key_lineage
from accounts.models import ApiKey, Invitation, Membership, Organization, User
from routerhub.router_names import routers_named_lock

# The `type: ignore[type-arg]` on admin classes below: Django's admin classes are generic only in
# django-stubs, and subscripting them at run time fails without django-stubs-ext, a dev-only tool.


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, authenticating through allauth: its ``login_failed`` limits
    (ACCOUNT_RATE_LIMITS, per email and per client IP) count admin and dashboard failures alike,
    so the admin is no way around the dashboard's lockout."""

    def clean(self) -> dict[str, Any]:
        email, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if email is not None and password:
            self.user_cache = get_adapter(self.request).authenticate(
                self.request, email=email, password=password
            )
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(User)
class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["email", "is_staff", "date_joined"]
    search_fields = ["email"]


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    extra = 0


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["slug", "name", "is_personal", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Keys, for operators. A key's parent and depth are what its creation recorded (an editable
    parent would be a menu of every organization's keys), and revoking goes through the action,
    which revokes the keys made from them too (``key_lineage.api_key_revoke``). A key's expiry
    and organization are shown, not edited: an expiry set here would not reach the keys made
    from it (the dashboard and API move it through ``key_lineage``), and a key moved to another
    organization would take its lineage across organizations. The person who made a key and the role
    they made it with are shown, not edited: a key never acts above that role (``keys.key_role``),
    and the person field would offer every user of every organization."""

    list_display = ["prefix", "name", "organization", "scope", "created_at", "revoked_at"]
    readonly_fields = [
        "digest",
        "prefix",
        "organization",
        "expires_at",
        "created_by",
        "created_by_role",
        "created_by_key",
        "lineage_depth",
        "revoked_at",
    ]
    search_fields = ["prefix", "name"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key is minted by the dashboard or the API: this form makes no digest nor prefix
        # (read-only above), and with its organization read-only it could not save one.
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        # A narrower allow-list reaches the keys made from the key, as through the API.
        with transaction.atomic():
            if "allowed_models" in form.changed_data:  # the routers it names (a delete waits)
                routers_named_lock(obj.organization_id, obj.allowed_models or ())
            super().save_model(request, obj, form, change)
            if change and "allowed_models" in form.changed_data:
                key_lineage.tree_narrow(obj.pk, None, obj.allowed_models or None)

    @admin.action(description="Revoke (with the keys made from them)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.order_by("pk"))
        for key in keys:
            key_lineage.api_key_revoke(key=key)
        self.message_user(request, f"{len(keys)} key(s) revoked, with the keys made from them.")


admin.site.register(Invitation)
