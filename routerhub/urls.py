"""URL map. ``/v1/*`` inference is served by the gateway ASGI app (see ``routerhub.asgi``)."""

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from routerhub import health, landing

api_v1 = [
    path("", include("accounts.api_urls")),
    path("", include("billing.api_urls")),
    path("", include("routing.api_urls")),
    path("", include("training.api_urls")),
    path("", include("webhooks.api_urls")),
]

urlpatterns = [
    path("", landing.home, name="home"),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", health.metrics),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include(api_v1)),
    path("api/notdiamond/", include("routing.notdiamond_urls")),  # their SDK's API URL
    path("billing/stripe/", include("billing.stripe.urls")),  # webhook, pay/return pages
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "dashboard/docs/",
        login_required(TemplateView.as_view(template_name="docs.html")),
        name="docs",
    ),
    path("", include("accounts.urls")),
    path("", include("routing.urls")),
    path("", include("billing.urls")),
    path("", include("training.urls")),
    path("", include("webhooks.urls")),
]
