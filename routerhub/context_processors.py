"""Template context for every page: the URL clients reach this server at."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_url(request: HttpRequest) -> str:
    """SITE_URL when the operator set it, else the request's own scheme and host (no slash)."""
    if settings.SITE_URL_SET:
        return str(settings.SITE_URL)
    return f"{request.scheme}://{request.get_host()}"


def site(request: HttpRequest) -> dict[str, str]:
    return {"site_url": public_url(request)}
