from django.urls import path

from routing import api, pipeline_api, routellm_api, router_api

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
        "routers/<slug:slug>/experiment",
        router_api.RouterExperimentView.as_view(),
        name="api-router-experiment",
    ),
    path(
        "routers/<slug:slug>/select",
        router_api.RouterSelectView.as_view(),
        name="api-router-select",
    ),
    path("pipelines", pipeline_api.PipelineListView.as_view(), name="api-pipelines"),
    path(  # POST imports; GET and DELETE reach a pipeline named "import" (made before the reservation)
        "pipelines/import",
        pipeline_api.PipelineImportView.as_view(),
        {"slug": "import"},
        name="api-pipeline-import",
    ),
    path("pipelines/<slug:slug>", pipeline_api.PipelineDetailView.as_view(), name="api-pipeline"),
    path(
        "pipelines/<slug:slug>/versions",
        pipeline_api.PipelineVersionListView.as_view(),
        name="api-pipeline-versions",
    ),
    path(
        "pipelines/<slug:slug>/report",
        pipeline_api.PipelineReportView.as_view(),
        name="api-pipeline-report",
    ),
    path("provider-keys", api.ProviderKeyListView.as_view(), name="api-provider-keys"),
    path(
        "provider-keys/<int:provider_key_id>",
        api.ProviderKeyDetailView.as_view(),
        name="api-provider-key",
    ),
]
