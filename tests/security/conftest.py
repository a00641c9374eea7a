"""Security tests use the gateway world of tests/routing (real HTTP, fake upstream)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.live_gateway import start_live_gateway
from tests.routing.conftest import (
    _fresh_gateway_state,
    fake_server,
    gateway_server,
    leaving,
    world,
)
from tests.security.raw_upstream import RawUpstream
from tests.security.stalling_resolver import resolver
from tests.training.conftest import media

# Fixtures defined elsewhere that tests here ask for by name (none imports them itself).
__all__ = [
    "_fresh_gateway_state",
    "fake_server",
    "gateway_server",
    "leaving",
    "media",
    "raw_servers",
    "resolver",
    "start_live_gateway",
    "world",
]


@pytest.fixture
def raw_servers() -> Iterator[list[RawUpstream]]:
    """Upstreams a test starts from raw sockets (``raw_upstream``), stopped after it."""
    servers: list[RawUpstream] = []
    yield servers
    for server in servers:
        server.stop()
