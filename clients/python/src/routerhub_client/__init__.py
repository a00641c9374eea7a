"""RouterHub's Python client: ``RouterHub`` (sync) and ``AsyncRouterHub``, typed errors."""

from routerhub_client._http import VERSION as __version__
from routerhub_client._pipelines import Pipeline, PipelineReport, PipelineVersion
from routerhub_client.async_client import AsyncRouterHub
from routerhub_client.client import RouterHub
from routerhub_client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DatasetInvalidError,
    InsufficientCreditsError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RouterHubError,
    ServiceUnavailableError,
    TrainingFailedError,
    UpstreamError,
    WaitTimeoutError,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncRouterHub",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DatasetInvalidError",
    "InsufficientCreditsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Pipeline",
    "PipelineReport",
    "PipelineVersion",
    "RateLimitError",
    "RouterHub",
    "RouterHubError",
    "ServiceUnavailableError",
    "TrainingFailedError",
    "UpstreamError",
    "WaitTimeoutError",
    "__version__",
]
