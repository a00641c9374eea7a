"""The catalog is edited here (prices, capabilities, enabling); saves reach gateways within 1 s."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from routing.models import CatalogModel, Endpoint, Provider, ProviderKey

# The `type: ignore[type-arg]` on admin classes below: Django's admin classes are generic only in
# django-stubs, and subscripting them at run time fails without django-stubs-ext, a dev-only tool.


class EndpointInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Endpoint
    extra = 0
    fields = (
        "provider",
        "upstream_model",
        "input_price",
        "cached_input_price",
        "output_price",
        "context_length",
        "max_output",
        "supports_tools",
        "supports_vision",
        "enabled",
    )


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "slug",
        "name",
        "api_style",
        "base_url",
        "api_key_env",
        "is_simulated",
        "enabled",
    )
    list_filter = ("api_style", "enabled", "is_simulated")
    search_fields = ("slug", "name")


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "id",
        "name",
        "author",
        "context_length",
        "max_output",
        "supports_tools",
        "supports_vision",
        "is_simulated",
        "enabled",
    )
    list_filter = ("author", "enabled", "supports_tools", "supports_vision")
    search_fields = ("id", "name")
    inlines = (EndpointInline,)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "model",
        "provider",
        "upstream_model",
        "input_price",
        "output_price",
        "price_checked",
        "hidden_reasoning",
        "enabled",
    )
    list_filter = ("provider", "enabled", "hidden_reasoning")
    search_fields = ("model__id", "upstream_model")
    list_select_related = ("model", "provider")


@admin.register(ProviderKey)
class ProviderKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("organization", "provider", "name", "last4", "created_at")
    fields = ("organization", "provider", "name", "last4", "created_at")
    readonly_fields = fields  # the secret is never shown, not even to staff

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key needs its secret, which only the API and the dashboard take (encrypted there);
        # an add form of read-only fields saved an empty row (500).
        return False
