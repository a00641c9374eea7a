from django.urls import path

from training import dataset_views, views

urlpatterns = [
    path("dashboard/datasets/", views.datasets_page, name="training-datasets"),
    path("dashboard/datasets/<int:dataset_id>/", views.dataset_page, name="training-dataset"),
    path(
        "dashboard/datasets/<int:dataset_id>/delete",
        views.dataset_delete,
        name="training-dataset-delete",
    ),
    path(
        "dashboard/datasets/<int:dataset_id>/train",
        dataset_views.dataset_train,
        name="training-dataset-train",
    ),
    path("dashboard/routers/", views.routers_page, name="training-routers"),
    path("dashboard/routers/<slug:slug>/", views.router_page, name="training-router"),
    path(
        "dashboard/routers/<slug:slug>/versions/<int:number>/",
        views.version_page,
        name="training-version",
    ),
    path(
        "dashboard/routers/<slug:slug>/versions/<int:number>/activate",
        views.version_activate,
        name="training-version-activate",
    ),
    path("dashboard/training-runs/<int:run_id>/", views.run_page, name="training-run"),
    path(
        "dashboard/training-runs/<int:run_id>/cancel", views.run_cancel, name="training-run-cancel"
    ),
]
