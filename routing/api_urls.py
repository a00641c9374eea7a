from django.urls import path

from routing import api, routellm_api, router_api

urlpatterns = [
    path("feedback", api.FeedbackView.as_view(), name="api-feedback"),
    path(
        "routers/<slug:slug>/retrain-from-feedback",
        router_api.RouterFeedbackRetrainView.as_view(),
        name="api-router-retrain-feedback",
    ),
    path(
        "routers/<slug:slug>/calibrate",
        routellm_api.RouterCalibrateView.as_view(),
        name="api-router-calibrate",
    ),
    path(
        "routers/<slug:slug>/select",
        router_api.RouterSelectView.as_view(),
        name="api-router-select",
    ),
    path("provider-keys", api.ProviderKeyListView.as_view(), name="api-provider-keys"),
    path(
        "provider-keys/<int:provider_key_id>",
        api.ProviderKeyDetailView.as_view(),
        name="api-provider-key",
    ),
]
