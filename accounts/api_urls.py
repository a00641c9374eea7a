from django.urls import path

from accounts import api

urlpatterns = [
    path("keys", api.ApiKeyListView.as_view(), name="api-keys"),
    path("keys/<int:key_id>", api.ApiKeyDetailView.as_view(), name="api-key"),
]
