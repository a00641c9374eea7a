"""Security tests use the gateway world of tests/routing (real HTTP, fake upstream)."""

from __future__ import annotations

from tests.routing.conftest import _fresh_gateway_state, fake_server, gateway_server, world

__all__ = ["_fresh_gateway_state", "fake_server", "gateway_server", "world"]
