"""CSRF on every dashboard form, generated from the URLConf: a new page is covered without
editing this file. Every non-API URL (dashboard, allauth, admin, Stripe pages) is POSTed to by a
signed-in owner: without a token Django's CSRF 403, with one never that (nor a 500); only
allow-listed views may be ``csrf_exempt``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from accounts.models import User

# Stripe cannot send a CSRF token; its signature authenticates the request.
CSRF_EXEMPT_ALLOWED = {"billing/stripe/webhook"}
# Not served by Django views at all (answered by ProbeMiddleware or the gateway).
NOT_DJANGO = {"healthz", "readyz"}
API_PREFIXES = ("api/", "v1/")
# Ids of no object: a POST that got through would change nothing.
_SAMPLES = ("999999", "auth", "abc")
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)")
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
_CONVERTER_SAMPLES = {"int": "999999", "path": "999999"}


def _route_of(pattern: Any) -> str:
    """A concrete path for one pattern (route converters or regex groups filled in)."""
    text = str(pattern.pattern)
    if not text.startswith("^"):
        return _CONVERTER.sub(lambda m: _CONVERTER_SAMPLES.get(m[1], "sample"), text)

    def sample(group: re.Match[str]) -> str:
        return next(s for s in _SAMPLES if re.fullmatch(group[2], s))

    return _NAMED_GROUP.sub(sample, text.strip("^").rstrip("$"))


def _urls(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _urls(pattern.url_patterns, prefix + _route_of(pattern))
        else:
            yield prefix + _route_of(pattern), pattern


def dashboard_urls() -> list[tuple[str, URLPattern]]:
    """Every non-API URL pattern of the project with a path that resolves to it."""
    found = []
    for route, pattern in _urls(get_resolver().url_patterns):
        if route.startswith(API_PREFIXES) or route in NOT_DJANGO or route.endswith(".*)"):
            continue
        assert resolve(f"/{route}").func == pattern.callback, f"/{route} resolves elsewhere"
        found.append((route, pattern))
    return found


@pytest.fixture
def owner(tenants: Any) -> User:
    """The organization's owner, also Django-admin staff: nothing is refused for its role."""
    user: User = tenants.owner
    user.is_staff = user.is_superuser = True
    user.save(update_fields=["is_staff", "is_superuser"])
    return user


def _post(owner: User, organization: Any, path: str, token: str | None) -> Any:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    session = client.session
    session["current_organization_id"] = organization.pk
    session.save()
    if token is None:
        return client.post(path, {})
    client.cookies["csrftoken"] = token
    # The token in the header, an empty form: no form is ever submitted (an admin delete page
    # would take any non-empty POST as its confirmation).
    return client.post(path, {}, HTTP_X_CSRFTOKEN=token)


def _csrf_refused(response: Any) -> bool:
    """Django's CSRF failure page; other 403s (a role, a read-only admin) are the view's own."""
    return response.status_code == 403 and b"CSRF verification failed" in response.content


@pytest.mark.django_db
def test_only_allow_listed_views_are_csrf_exempt() -> None:
    exempt = {
        route
        for route, pattern in dashboard_urls()
        if getattr(pattern.callback, "csrf_exempt", False)
    }

    assert exempt == CSRF_EXEMPT_ALLOWED


@pytest.mark.django_db
def test_every_dashboard_post_needs_the_csrf_token(owner: User, tenants: Any) -> None:
    refused_without, refused_with, accepting_post = [], [], set()
    urls = [(r, p) for r, p in dashboard_urls() if r not in CSRF_EXEMPT_ALLOWED]

    for route, pattern in urls:
        path = f"/{route}"
        without = _post(owner, tenants.organization, path, token=None)
        with_token = _post(owner, tenants.organization, path, token=_get_new_csrf_string())
        if not _csrf_refused(without):
            refused_without.append((path, without.status_code))
        if _csrf_refused(with_token) or with_token.status_code >= 500:
            refused_with.append((path, with_token.status_code))
        if with_token.status_code != 405:
            accepting_post.add(pattern.name or route)

    assert refused_without == [], "POSTs accepted without a CSRF token"
    assert refused_with == [], "POSTs refused (or failing) with a valid CSRF token"
    # The walk did reach the forms that change state (and more: every page is checked).
    assert accepting_post >= {
        "account_login", "account_logout", "account_signup", "account_change_password",
        "account_email", "account_reset_password", "keys", "key-revoke", "organization-create",
        "organization-settings", "organization-switch", "member-update", "invitation-accept",
        "provider-keys", "credits-buy", "training-datasets", "training-dataset-delete",
        "training-version-activate", "training-run-cancel", "router-retrain-feedback",
        "accounts_apikey_add", "logout",
    }  # fmt: skip
    assert len(urls) > 60
