"""Migration tests: the gateway world of tests/routing plus training through the API."""

from __future__ import annotations

from tests.serving.conftest import (
    _fresh_gateway_state,
    _fresh_router_caches,
    eager_celery,
    fake_server,
    gateway_server,
    media,
    world,
)

__all__ = [
    "_fresh_gateway_state",
    "_fresh_router_caches",
    "eager_celery",
    "fake_server",
    "gateway_server",
    "media",
    "world",
]
