"""Who may send a dataset-sized body: asked by ``routerhub.body_limits`` before any of it is read.

The dataset upload paths take ``DATASET_MAX_BYTES`` (200 MB by default), which Django spools to a
temporary file before any view or middleware runs. Granting that to whoever asks let an anonymous
client make the server write 200 MB to disk per request, answered 401 only once it was all
written. So a body past the general limit is read only for a caller whose upload the view would
accept: an admin's (or owner's) management key, or a signed-in session whose organization they
administer. Everyone else is refused from the headers, with the error the view would give.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.utils.module_loading import import_string

from accounts.keys import bearer_token, key_authenticate
from accounts.models import Membership, Role, role_allows
from routerhub.domain import DomainError, NotAuthenticated, NotPermitted

_NEEDS = "Uploading a dataset needs the admin role"


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _key_refusal(authorization: str) -> DomainError | None:
    try:
        key = key_authenticate(bearer_token(authorization))
    except DomainError as error:
        return error
    if not key.is_management:
        return NotPermitted(f"{_NEEDS}: inference keys (rh-live-) cannot upload datasets.")
    if not role_allows(key.role, Role.ADMIN):
        return NotPermitted(f"{_NEEDS}; this management key acts with the {key.role} role.")
    return None


def _session(cookie_header: str | None) -> SessionBase | None:
    # Read as Django reads the Cookie header (``parse_cookie``: lenient where SimpleCookie fails).
    session_key = parse_cookie(cookie_header or "").get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    store: type[SessionBase] = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    return store(session_key)


def _session_refusal(cookie_header: str | None) -> DomainError | None:
    session = _session(cookie_header)
    user = None
    if session is not None:
        request = HttpRequest()  # what get_user reads: the session (and its auth hash)
        request.session = session
        user = get_user(request)
    if user is None or not user.is_authenticated:
        return NotAuthenticated("Sign in, or send an admin's management key, to upload a dataset.")
    memberships = Membership.objects.filter(user_id=user.pk)
    chosen = session.get(settings.ORGANIZATION_SESSION_KEY) if session is not None else None
    membership = memberships.filter(organization_id=chosen).first() if chosen else None
    if membership is None:  # the dashboard's choice when the session names none (or a stale one)
        membership = memberships.order_by("-organization__is_personal", "created_at").first()
    if membership is None or not role_allows(Role(membership.role), Role.ADMIN):
        return NotPermitted(f"{_NEEDS}.")
    return None


def upload_refusal(headers: Iterable[tuple[bytes, bytes]]) -> DomainError | None:
    """Why the request with these headers may not send a dataset-sized body (None: it may).
    Synchronous (the ORM and the session store); call it in a worker thread from async code
    (``thread_sensitive=False``): it closes that thread's database connection when done."""
    headers = list(headers)
    try:
        authorization = _header(headers, b"authorization")
        if authorization:
            return _key_refusal(authorization)
        return _session_refusal(_header(headers, b"cookie"))
    finally:
        # Asked outside Django's request cycle, which would otherwise return this thread's
        # connection to the pool: return it here.
        connection.close()
