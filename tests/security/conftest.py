"""Security tests use the gateway world of tests/routing (real HTTP, fake upstream)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.routing.conftest import (
    _fresh_gateway_state,
    fake_server,
    gateway_server,
    leaving,
    world,
)
from tests.security.raw_upstream import RawUpstream

__all__ = [
    "_fresh_gateway_state",
    "fake_server",
    "gateway_server",
    "leaving",
    "raw_servers",
    "world",
]


@pytest.fixture
def raw_servers() -> Iterator[list[RawUpstream]]:
    """Upstreams a test starts from raw sockets (``raw_upstream``), stopped after it."""
    servers: list[RawUpstream] = []
    yield servers
    for server in servers:
        server.stop()
