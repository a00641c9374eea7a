from django.urls import path

from billing import api

urlpatterns = [
    path("key", api.CurrentKeyView.as_view(), name="api-current-key"),
]
