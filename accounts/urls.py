from django.urls import path

from accounts import views

urlpatterns = [
    path("dashboard/keys/", views.keys_page, name="keys"),
    path("dashboard/keys/<int:key_id>/revoke", views.key_revoke, name="key-revoke"),
    path("dashboard/organization/", views.organization_page, name="organization"),
    path("dashboard/organization/new", views.organization_create, name="organization-create"),
    path(
        "dashboard/organization/settings",
        views.organization_settings,
        name="organization-settings",
    ),
    path("dashboard/organization/switch", views.organization_switch, name="organization-switch"),
    path("dashboard/members/<int:membership_id>", views.member_update, name="member-update"),
    path(
        "dashboard/invitations/<int:invitation_id>/cancel",
        views.invitation_cancel,
        name="invitation-cancel",
    ),
    path("invitations/<str:token>/", views.invitation_accept, name="invitation-accept"),
]
