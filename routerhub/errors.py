"""The one error format of API.md and the one place that maps domain errors to HTTP (``HTTP_OF``).

Every ``/api/`` and ``/v1/`` error body is
``{"error": {"code", "type", "message", "param", "metadata"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from routerhub import domain
from routerhub.domain import DomainError

logger = logging.getLogger(__name__)

# The one table from domain errors to HTTP: (status, error type of API.md). An error's status is
# its nearest class's entry here (``http_of``).
HTTP_OF: dict[type[DomainError], tuple[int, str]] = {
    domain.DomainError: (400, "bad_request"),
    domain.InvalidInput: (400, "bad_request"),
    domain.ContextLengthExceeded: (400, "context_length_exceeded"),  # OpenAI's name for it
    domain.NotAuthenticated: (401, "unauthorized"),
    domain.OutOfCredits: (402, "insufficient_credits"),
    domain.NotPermitted: (403, "forbidden"),
    domain.KeyLimitReached: (403, "key_limit_reached"),
    domain.NotFound: (404, "not_found"),
    domain.RequestTimeout: (408, "request_timeout"),
    domain.UpstreamTimeout: (408, "upstream_timeout"),
    domain.Conflict: (409, "conflict"),
    domain.TooLarge: (413, "payload_too_large"),
    domain.RateLimited: (429, "rate_limited"),
    domain.UpstreamFailed: (502, "upstream_error"),
    domain.NoProviderAvailable: (503, "no_provider_available"),
    domain.Unavailable: (503, "service_unavailable"),
    domain.PaymentsUnavailable: (503, "payments_unavailable"),
}


def http_of(error: DomainError) -> tuple[int, str]:
    """The status and error type of ``error``: its nearest class in ``HTTP_OF``."""
    for cls in type(error).__mro__:
        if cls in HTTP_OF:
            return HTTP_OF[cls]
    raise TypeError(f"{type(error).__name__} is not a DomainError")


# The names the HTTP layers use for the domain errors (the gateway, API views and tests).
ApiError = DomainError
BadRequest = domain.InvalidInput
Unauthorized = domain.NotAuthenticated
InsufficientCredits = domain.OutOfCredits
Forbidden = domain.NotPermitted
KeyLimitReached = domain.KeyLimitReached
NotFound = domain.NotFound
Conflict = domain.Conflict
UpstreamTimeout = domain.UpstreamTimeout
PayloadTooLarge = domain.TooLarge
RequestTimeout = domain.RequestTimeout
RateLimited = domain.RateLimited
UpstreamFailed = domain.UpstreamFailed
NoProviderAvailable = domain.NoProviderAvailable
ContextLengthExceeded = domain.ContextLengthExceeded
ServiceUnavailable = domain.Unavailable


# Headers of an error that retrying cannot change (no credentials configured, nothing that can
# serve the request): no Retry-After, and the header the OpenAI and Anthropic SDKs obey to skip
# their automatic retries (they retry every 5xx otherwise). Transient errors (upstream down,
# circuit open, rate limited, database away) keep their Retry-After.
NOT_RETRYABLE = {"x-should-retry": "false"}


def error_body(
    code: int,
    type_: str,
    message: str,
    param: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "type": type_,
            "message": message,
            "param": param,
            "metadata": metadata or {},
        }
    }


def error_json_response(code: int, type_: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, type_, message), status=code)


_DRF_TYPES: dict[type[drf.APIException], str] = {
    drf.ValidationError: "bad_request",
    drf.ParseError: "bad_request",
    drf.NotAuthenticated: "unauthorized",
    drf.AuthenticationFailed: "unauthorized",
    drf.PermissionDenied: "forbidden",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
}


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str]:
    """Walk a DRF ValidationError detail to the first (field, message) a person can act on."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = field if field != "non_field_errors" else ""
            param, message = _first_validation_error(value, f"{prefix}{name}")
            return param or (f"{prefix}{name}" or None), message
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    return (prefix or None), str(detail)


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: render domain and framework errors in the one format."""
    if isinstance(exc, RequestDataTooBig):
        # Worded as the gateway words its limit: the select endpoint answers from both.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    elif isinstance(exc, TooManyFieldsSent):
        exc = BadRequest("The request has too many form fields.")
    elif isinstance(exc, RecursionError):
        # Python's json parser recurses per nesting level: a deeply nested body ends here.
        exc = BadRequest("The request body is nested too deeply.")
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    if isinstance(exc, Http404):
        exc = drf.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if not isinstance(exc, drf.APIException):
        return None  # unexpected: Django's 500 path, rewritten by ApiErrorMiddleware
    status = exc.status_code
    type_ = next((t for cls, t in _DRF_TYPES.items() if isinstance(exc, cls)), "error")
    param: str | None = None
    metadata: dict[str, Any] = {}
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        if param:
            message = f"{param}: {message}"
        metadata = {"fields": exc.detail}
    else:
        message = str(exc.detail)
    headers: dict[str, str] = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf.Throttled) and wait:
        headers["Retry-After"] = str(int(wait) + 1)
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        headers["WWW-Authenticate"] = "Bearer"
        status = 401
    return Response(error_body(status, type_, message, param, metadata), status, headers=headers)
