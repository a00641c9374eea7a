"""Not Diamond's paths, mounted at ``/api/notdiamond/``: their SDK's API URL is that prefix."""

from django.urls import path

from routing import notdiamond_api

urlpatterns = [
    path(
        "v2/modelRouter/modelSelect",
        notdiamond_api.ModelSelectView.as_view(),
        name="notdiamond-model-select",
    ),
    path(
        "v2/report/metrics/feedback",
        notdiamond_api.FeedbackView.as_view(),
        name="notdiamond-feedback",
    ),
    path(
        "v2/report/metrics/latency",
        notdiamond_api.LatencyView.as_view(),
        name="notdiamond-latency",
    ),
    path(
        "v2/preferences/userPreferenceCreate",
        notdiamond_api.PreferenceCreateView.as_view(),
        name="notdiamond-preference-create",
    ),
    path(
        "v2/pzn/trainCustomRouter",
        notdiamond_api.TrainCustomRouterView.as_view(),
        name="notdiamond-train-custom-router",
    ),
]
