from django.urls import path

from billing import generation_views, views

urlpatterns = [
    path("dashboard/", views.overview_page, name="dashboard"),
    path("dashboard/credits/", views.credits_page, name="credits"),
    path("dashboard/credits/buy", views.credits_buy, name="credits-buy"),
    path("dashboard/usage/", views.usage_page, name="usage"),
    path(
        "dashboard/generations/<path:generation_id>/",
        generation_views.generation_page,
        name="generation",
    ),
]
