from django.urls import path

from webhooks import api

urlpatterns = [
    path("webhooks", api.WebhookListView.as_view(), name="api-webhooks"),
    path("webhooks/<int:webhook_id>", api.WebhookDetailView.as_view(), name="api-webhook"),
    path(
        "webhooks/<int:webhook_id>/deliveries",
        api.WebhookDeliveryListView.as_view(),
        name="api-webhook-deliveries",
    ),
]
