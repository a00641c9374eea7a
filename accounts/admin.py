from django.contrib import admin

from accounts.models import ApiKey, Invitation, Membership, Organization, User


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
    list_display = ["prefix", "name", "organization", "scope", "created_at", "revoked_at"]
    readonly_fields = ["digest", "prefix"]
    search_fields = ["prefix", "name"]


admin.site.register(Invitation)
