from django.urls import path

from training import api, lifecycle_api

urlpatterns = [
    path("datasets", api.DatasetListView.as_view(), name="api-datasets"),
    path("datasets/<int:dataset_id>", api.DatasetDetailView.as_view(), name="api-dataset"),
    path("routers", api.RouterListView.as_view(), name="api-routers"),
    path("routers/<slug:slug>", api.RouterDetailView.as_view(), name="api-router"),
    path("routers/<slug:slug>/train", api.RouterTrainView.as_view(), name="api-router-train"),
    path("routers/<slug:slug>/drift", api.RouterDriftView.as_view(), name="api-router-drift"),
    path(
        "routers/<slug:slug>/versions",
        api.RouterVersionListView.as_view(),
        name="api-router-versions",
    ),
    path(
        "routers/<slug:slug>/versions/<int:number>/activate",
        api.RouterVersionActivateView.as_view(),
        name="api-router-version-activate",
    ),
    path(
        "routers/<slug:slug>/versions/<int:number>/report",
        api.RouterVersionReportView.as_view(),
        name="api-router-version-report",
    ),
    path(
        "routers/<slug:slug>/lifecycle",
        lifecycle_api.RouterLifecycleView.as_view(),
        name="api-router-lifecycle",
    ),
    path(
        "routers/<slug:slug>/rollback",
        lifecycle_api.RouterRollbackView.as_view(),
        name="api-router-rollback",
    ),
    path(
        "routers/<slug:slug>/events",
        lifecycle_api.RouterEventListView.as_view(),
        name="api-router-events",
    ),
    path(
        "training-runs/<int:run_id>", api.TrainingRunDetailView.as_view(), name="api-training-run"
    ),
    path(
        "training-runs/<int:run_id>/cancel",
        api.TrainingRunCancelView.as_view(),
        name="api-training-run-cancel",
    ),
]
