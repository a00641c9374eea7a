from django.urls import path

from routing import views

urlpatterns = [
    path("dashboard/models/", views.models_page, name="models"),
]
