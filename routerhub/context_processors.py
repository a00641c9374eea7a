"""Template context for every page: the URL clients reach this server at, where email goes."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_url(request: HttpRequest) -> str:
    """SITE_URL when the operator set it, else the request's own scheme and host (no slash)."""
    if settings.SITE_URL_SET:
        return str(settings.SITE_URL)
    return f"{request.scheme}://{request.get_host()}"


def site(request: HttpRequest) -> dict[str, object]:
    return {
        "site_url": public_url(request),
        # Pages that promise an email say where it goes when the server only prints them.
        "emails_to_console": "console" in str(settings.EMAIL_BACKEND),
    }
