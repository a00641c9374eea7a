"""OpenAPI additions: every operation documents the one error format and the statuses it uses.

drf-spectacular documents only success responses; clients (and schemathesis) need to know that
a 400, 401, 403, 404… is ``{"error": {...}}`` as API.md defines it.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "type", "message", "param", "metadata"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "type": {"type": "string", "example": "bad_request"},
                "message": {"type": "string", "description": "A sentence a person can act on."},
                "param": {"type": "string", "nullable": True},
                "metadata": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

# Statuses any /api/v1 operation may answer (API.md, "Conventions" and the error table).
ERROR_STATUSES = {
    "400": "Invalid request (the message names the field).",
    "401": "Missing or invalid API key or session.",
    "403": "The key's scope or the member's role does not allow this.",
    "404": "No such object in this organization.",
    "405": "Method not allowed.",
    "409": "The object's state does not allow this now.",
    "413": "The request body or file is too large.",
    "415": "Unsupported content type.",
    "429": "Rate limited (see Retry-After).",
    "503": "Temporarily unavailable (a dependency is down, or card payments are not configured "
    "on this server); retry later.",
}


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error component and responses everywhere."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for status, description in ERROR_STATUSES.items():
                # An operation may describe one of these itself (``extend_schema``); its body is
                # still the error format.
                responses.setdefault(status, {"description": description}).setdefault(
                    "content", error
                )
    return result
