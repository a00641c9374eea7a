"""Typed exceptions carrying the fields of RouterHub's one error format.

Every ``/api/v1`` error body is ``{"error": {"code", "type", "message", "param", "metadata"}}``;
each response also carries ``X-Request-Id``, which support needs to find the request.
"""

from __future__ import annotations

from typing import Any


class RouterHubError(Exception):
    """Base class of every error this client raises."""


class APIConnectionError(RouterHubError):
    """The server could not be reached (or did not answer in time) after every retry."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the client's timeout."""


class WaitTimeoutError(RouterHubError):
    """A ``wait`` helper gave up before the dataset or training run finished."""


class APIStatusError(RouterHubError):
    """The server answered with an error status; the fields come from its error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,
        param: str | None = None,
        metadata: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = status  # API.md's name for the status inside the error body
        self.type = type
        self.param = param
        self.metadata = metadata or {}
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        where = f" (param {self.param})" if self.param else ""
        request = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.status} {self.type}: {self.message}{where}{request}"


class BadRequestError(APIStatusError):
    """400: the request is invalid; ``param`` names the field when there is one."""


class AuthenticationError(APIStatusError):
    """401: the key is missing, unknown, revoked or expired."""


class InsufficientCreditsError(APIStatusError):
    """402: the organization's credits cannot cover the request."""


class PermissionDeniedError(APIStatusError):
    """403: the key's scope, role or limits do not allow this call."""


class NotFoundError(APIStatusError):
    """404: no such object in the key's organization."""


class ConflictError(APIStatusError):
    """409: the object is in a state that forbids the call (e.g. a run already in progress)."""


class PayloadTooLargeError(APIStatusError):
    """413: the body is larger than the server accepts."""


class RateLimitError(APIStatusError):
    """429: rate limited; ``retry_after`` says when to try again."""


class UpstreamError(APIStatusError):
    """408/502: the upstream provider timed out or failed."""


class ServiceUnavailableError(APIStatusError):
    """503: RouterHub or every provider is unavailable; retrying later may work."""


class DatasetInvalidError(RouterHubError):
    """A dataset finished validation as ``invalid``; ``errors`` lists what to fix."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.errors: list[Any] = list(dataset.get("errors") or [])
        first = self.errors[0] if self.errors else {}
        detail = f": row {first.get('row')}, column {first.get('column')}: {first.get('message')}"
        super().__init__(f"dataset {dataset.get('id')} is invalid{detail if first else ''}")


class TrainingFailedError(RouterHubError):
    """A training run ended ``failed`` or ``cancelled``; ``run`` is its last state."""

    def __init__(self, run: Any) -> None:
        self.run = run
        super().__init__(f"training run {run.get('id')} {run.get('status')}: {run.get('error')}")


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: UpstreamError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    502: UpstreamError,
    503: ServiceUnavailableError,
}


def error_class_for(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP status (``APIStatusError`` for the unlisted ones)."""
    return _BY_STATUS.get(status, APIStatusError)
