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
    "408": "The request body arrived too slowly (REQUEST_BODY_IDLE_SECONDS, "
    "REQUEST_BODY_MIN_BYTES_PER_SECOND).",
    "409": "The object's state does not allow this now.",
    "413": "The request body or file is too large.",
    "415": "Unsupported content type.",
    "429": "Rate limited (see Retry-After).",
    "503": "Temporarily unavailable (a dependency is down, or card payments are not configured "
    "on this server); retry later.",
}


def gateway_routes() -> list[str]:
    """``METHOD /path`` of every route the gateway's ASGI app serves ahead of Django, read from
    its route tables: none is an operation of this schema (Django does not route them)."""
    from routing.gateway.app import GATEWAY_ROUTES
    from routing.gateway.openrouter import openrouter_routes

    return [f"{route.methods} {route.path}" for route in GATEWAY_ROUTES] + openrouter_routes()


def gateway_description(description: str) -> str:
    """The schema's description, naming the gateway's routes this schema leaves out."""
    routes = "\n".join(f"- `{route}`" for route in gateway_routes())
    return (
        f"{description}\n\nNot in this schema: the inference gateway's routes, which take and "
        "answer the OpenAI, Anthropic and OpenRouter formats (their SDKs are the reference; "
        "statuses as API.md's inference section: 400, 401, 402, 403, 404, 408, 413, 429, 502, "
        f"503; errors in this error format, Anthropic's on /v1/messages):\n{routes}"
    )


def add_error_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error component and responses everywhere, and
    the gateway's routes named in the description."""
    info = result.setdefault("info", {})
    info["description"] = gateway_description(str(info.get("description", "")))
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
