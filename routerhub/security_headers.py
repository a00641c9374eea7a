"""The Content-Security-Policy of HTML pages; Django's SecurityMiddleware and
XFrameOptionsMiddleware set the other security headers (``settings_parts/security.py``).

JSON answers get none: a policy restricts what a document loads and runs, and an API answer is
no document (Django's nosniff header keeps a browser from reading it as one).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"


def policy_with(policy: str, extra: dict[str, list[str]]) -> str:
    """``policy`` with ``extra`` sources added to its directives (a directive it lacks starts
    from ``default-src``'s sources, as a browser would read it)."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if words := part.split():  # a trailing ";" leaves an empty part
            directives.setdefault(words[0].lower(), words[1:])
    for name, sources in extra.items():
        base = directives.get(name, directives.get("default-src", []))
        merged = [source for source in base if source != "'none'"]
        for source in sources:
            if source not in merged:
                merged.append(source)
        directives[name] = merged
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


def page_policy(extra: dict[str, list[str]] | None = None) -> str:
    """The policy of a page that needs ``extra`` sources ("" when policies are off)."""
    policy = settings.CONTENT_SECURITY_POLICY
    return policy_with(policy, extra) if policy and extra else policy


def _applies(request: HttpRequest, response: HttpResponseBase) -> bool:
    return (
        bool(settings.CONTENT_SECURITY_POLICY)
        and HEADER not in response
        and response.get("Content-Type", "").startswith("text/html")
        and not request.path.startswith(tuple(settings.CSP_EXCLUDED_PATHS))
    )


class ContentSecurityPolicyMiddleware:
    """Adds ``CONTENT_SECURITY_POLICY`` to HTML responses that have none of their own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if _applies(request, response):
            response[HEADER] = settings.CONTENT_SECURITY_POLICY
        return response
