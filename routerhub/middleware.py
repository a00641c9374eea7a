"""Project-wide middleware: request ids on every response, JSON errors under /api/ and /v1/."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from routerhub.errors import error_body

logger = logging.getLogger(__name__)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")
API_PREFIXES = ("/api/", "/v1/")
_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal_error",
}


def request_id_from(header_value: str | None) -> str:
    """Keep a caller's id when it is safe to echo; otherwise mint one."""
    if header_value and _SAFE_REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request.headers.get("X-Request-Id"))
        # Why the ignore below: HttpRequest declares no `request_id`; it is ours, set once per
        # request here.
        request.request_id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


class ApiErrorMiddleware:
    """Rewrites Django's HTML error pages into API.md's error format for API paths."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIXES) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        code = response.status_code
        message = {
            404: f"No route matches {request.method} {request.path}.",
            405: f"Method {request.method} is not allowed here.",
            403: "Forbidden (CSRF check failed or not allowed).",
        }.get(code, "The request could not be completed.")
        return JsonResponse(
            error_body(code, _STATUS_TYPES.get(code, "error"), message), status=code
        )

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError | InterfaceError):
            return _database_unavailable(request)
        if not request.path.startswith(API_PREFIXES):
            return None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        body = error_body(500, "internal_error", "Internal error; the request id identifies it.")
        return JsonResponse(body, status=500)


def _database_unavailable(request: HttpRequest) -> HttpResponse:
    """The database is down, restarting, or no pooled connection became free within
    ``DATABASE_POOL_TIMEOUT`` (psycopg_pool's ``PoolTimeout``, which Django raises as an
    ``OperationalError``): a retryable 503 with Retry-After, as the gateway answers, not a 500."""
    logger.warning("database unavailable on %s %s", request.method, request.path)
    headers = {"Retry-After": "1"}
    message = "The service is temporarily unavailable; retry in a moment."
    if request.path.startswith(API_PREFIXES):
        body = error_body(503, "service_unavailable", message)
        return JsonResponse(body, status=503, headers=headers)
    return HttpResponse(message, status=503, content_type="text/plain", headers=headers)


class ProbeMiddleware:
    """Answers /healthz and /readyz before host validation: orchestrators probe by pod IP."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from routerhub import health

        if request.path == "/healthz":
            return health.healthz(request)
        if request.path == "/readyz":
            return health.readyz(request)
        return self.get_response(request)
