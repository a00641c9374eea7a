"""DRF authentication: bearer API keys, and dashboard sessions with CSRF."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request

from accounts.keys import AuthenticatedKey, bearer_token, key_authenticate


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer rh-…``; ``request.auth`` becomes an ``AuthenticatedKey``."""

    def authenticate(self, request: Request) -> tuple[AnonymousUser, AuthenticatedKey] | None:
        header = request.headers.get("Authorization")
        if not header:
            return None
        return AnonymousUser(), key_authenticate(bearer_token(header))

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class CsrfSessionAuthentication(SessionAuthentication):
    """Django sessions; DRF enforces CSRF for unsafe methods."""
