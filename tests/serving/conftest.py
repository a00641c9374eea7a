"""Router serving fixtures: the gateway world of tests/routing plus training through the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.routing.conftest import _fresh_gateway_state, fake_server, gateway_server, world
from tests.training.conftest import eager_celery, media

__all__ = [
    "_fresh_gateway_state",
    "eager_celery",
    "fake_server",
    "gateway_server",
    "media",
    "world",
]


@pytest.fixture(autouse=True)
def _fresh_router_caches() -> Iterator[None]:
    from routing.routers import router_cache_clear
    from training.predictor import predictor_cache_clear

    router_cache_clear()
    predictor_cache_clear()
    yield
    router_cache_clear()
    predictor_cache_clear()


@pytest.fixture
def fast_router_reload(settings: Any) -> None:
    settings.ROUTER_CACHE_TTL = 0.2
