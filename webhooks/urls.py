from django.urls import path

from webhooks import views

urlpatterns = [
    path("dashboard/webhooks/", views.webhooks_page, name="webhooks"),
    path("dashboard/webhooks/<int:webhook_id>/toggle", views.webhook_toggle, name="webhook-toggle"),
    path("dashboard/webhooks/<int:webhook_id>/delete", views.webhook_delete, name="webhook-delete"),
]
