"""Dashboard requests carry their organization and role (``request.organization``/``membership``)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from accounts.tenancy import session_membership


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(("/v1/", "/static/", "/healthz", "/readyz", "/metrics")):
            membership = SimpleLazyObject(lambda: session_membership(request))
            # Why the ignore below: HttpRequest declares no `membership`; views read it only
            # through accounts.tenancy.dashboard_membership, which checks its type.
            request.membership = membership  # type: ignore[attr-defined]
        return self.get_response(request)
