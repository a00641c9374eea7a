from django.urls import path

from routing import views

urlpatterns = [
    path("dashboard/models/", views.models_page, name="models"),
    path("dashboard/playground/", views.playground_page, name="playground"),
    path("dashboard/provider-keys/", views.provider_keys_page, name="provider-keys"),
]
