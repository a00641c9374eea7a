from django.urls import path

from routing import api

urlpatterns = [
    path("provider-keys", api.ProviderKeyListView.as_view(), name="api-provider-keys"),
    path(
        "provider-keys/<int:provider_key_id>",
        api.ProviderKeyDetailView.as_view(),
        name="api-provider-key",
    ),
]
