from django.urls import path

from routing import pipeline_views, playground, views

urlpatterns = [
    path("dashboard/models/", views.models_page, name="models"),
    path("dashboard/playground/", views.playground_page, name="playground"),
    path("dashboard/playground/chat", playground.playground_chat, name="playground-chat"),
    path("dashboard/provider-keys/", views.provider_keys_page, name="provider-keys"),
    path("dashboard/pipelines/", pipeline_views.pipelines_page, name="pipelines"),
    path(
        "dashboard/pipelines/<slug:pipeline_slug>/",
        pipeline_views.pipeline_page,
        name="pipeline",
    ),
    path(
        "dashboard/routers/<slug:slug>/retrain-from-feedback",
        views.router_retrain_from_feedback,
        name="router-retrain-feedback",
    ),
]
