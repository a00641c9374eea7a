"""The one error format of API.md and the one place that maps domain errors to HTTP.

Every ``/api/`` and ``/v1/`` error body is
``{"error": {"code", "type", "message", "param", "metadata"}}``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A domain error with its HTTP status; raise a subclass, never build responses by hand."""

    status: ClassVar[int] = 400
    type: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.metadata = metadata or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.type, self.message, self.param, self.metadata)


class BadRequest(ApiError):
    status, type = 400, "bad_request"


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"


class InsufficientCredits(ApiError):
    status, type = 402, "insufficient_credits"


class Forbidden(ApiError):
    status, type = 403, "forbidden"


class KeyLimitReached(ApiError):
    status, type = 403, "key_limit_reached"


class NotFound(ApiError):
    status, type = 404, "not_found"


class Conflict(ApiError):
    status, type = 409, "conflict"


class UpstreamTimeout(ApiError):
    status, type = 408, "upstream_timeout"


class PayloadTooLarge(ApiError):
    status, type = 413, "payload_too_large"


class RateLimited(ApiError):
    status, type = 429, "rate_limited"


class UpstreamFailed(ApiError):
    status, type = 502, "upstream_error"


class NoProviderAvailable(ApiError):
    status, type = 503, "no_provider_available"


class ContextLengthExceeded(BadRequest):
    """The prompt and ``max_tokens`` exceed the context window of every candidate model."""

    type = "context_length_exceeded"  # OpenAI's name for it


class ServiceUnavailable(ApiError):
    """A service RouterHub depends on (its database) is unreachable; retrying soon may work."""

    status, type = 503, "service_unavailable"


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
