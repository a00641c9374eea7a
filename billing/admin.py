"""Usage records for operators: read-only (money moves only through the ledger), filterable by
the flags that need a look (over_hold, shortfall, usage_clamped, usage_estimated)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import UsageFlag, UsageRecord

# The `type: ignore[type-arg]` on admin classes below: Django's admin classes are generic only in
# django-stubs, and subscripting them at run time fails without django-stubs-ext, a dev-only tool.


class UsageFlagFilter(admin.SimpleListFilter):
    title = "flag"
    parameter_name = "flag"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:  # type: ignore[type-arg]
        return [(flag.value, str(flag.label)) for flag in UsageFlag]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[UsageRecord]
    ) -> QuerySet[UsageRecord]:
        flag = self.value()
        if flag is None or flag not in UsageFlag.values:
            return queryset
        # Flags are comma-separated names, none a substring of another.
        return queryset.filter(flags__contains=flag)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "generation_id",
        "organization",
        "model",
        "provider",
        "status_shown",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "flags",
        "created_at",
    )
    list_filter = (UsageFlagFilter, "status", "is_byok")
    search_fields = ("generation_id", "model")
    list_select_related = ("organization",)
    exclude = ("prompt",)  # tenant text, kept only for the tenant's own training data

    @admin.display(description="status", ordering="status")
    def status_shown(self, record: UsageRecord) -> str:
        return record.status_label

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
