"""Domain errors: what went wrong, in the domain's words, with no HTTP in them.

Services raise these. ``routerhub.errors.HTTP_OF`` maps each one to its status and error type in
one table, and everything that answers a request (the API, the gateway, the dashboard) renders
them from there: ``status``, ``type`` and ``body()`` below only look the error up in that table.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can act on; ``param`` names the input at fault."""

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
        self.headers = headers or {}  # hints for the answer, e.g. Retry-After

    @property
    def status(self) -> int:
        from routerhub.errors import http_of

        return http_of(self)[0]

    @property
    def type(self) -> str:
        from routerhub.errors import http_of

        return http_of(self)[1]

    def body(self) -> dict[str, Any]:
        from routerhub.errors import error_body

        return error_body(self.status, self.type, self.message, self.param, self.metadata)


class InvalidInput(DomainError):
    """The request cannot be done as given; the message says what to change."""


class ContextLengthExceeded(InvalidInput):
    """The prompt and ``max_tokens`` exceed the context window of every candidate model."""


class NotAuthenticated(DomainError):
    """No valid credentials."""


class OutOfCredits(DomainError):
    """The organization's balance cannot cover the request."""


class NotPermitted(DomainError):
    """The caller is known but may not do this."""


class KeyLimitReached(DomainError):
    """The API key's own spending limit is used up."""


class NotFound(DomainError):
    """No such object for this caller (another organization's objects included)."""


class Conflict(DomainError):
    """The object's current state forbids the change (e.g. a run already active)."""


class TooLarge(DomainError):
    """An input is over its size limit."""


class RequestTimeout(DomainError):
    """The client did not send its request in time."""


class RateLimited(DomainError):
    """Too many requests or tokens in the current window."""


class UpstreamTimeout(DomainError):
    """The model provider did not answer in time."""


class UpstreamFailed(DomainError):
    """The model provider answered with an error."""


class NoProviderAvailable(DomainError):
    """No provider can serve the request now."""


class Unavailable(DomainError):
    """A service RouterHub depends on is unreachable; retrying soon may work."""


class PaymentsUnavailable(DomainError):
    """Card payments are not configured on this server."""
