"""How the API authenticates, in the OpenAPI schema: generated clients learn to send the key.

drf-spectacular registers these extensions when this module is imported (``AccountsConfig``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


# Why the ignore below: drf-spectacular's extension base registers subclasses in an untyped
# __init_subclass__.
class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "rh-mgmt-… (management) or rh-live-… (inference)",
            "description": "An API key from the dashboard's Keys page: "
            "`Authorization: Bearer <key>`.",
        }


# Why the ignore below: as for ApiKeyScheme.
class SessionScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.authentication.CsrfSessionAuthentication"
    name = "session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": "The dashboard's login session (unsafe methods also need the "
            "`X-CSRFToken` header).",
        }
