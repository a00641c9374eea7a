"""Reliability tests run the gateway as real processes (``live_gateway``)."""

from __future__ import annotations

from tests.reliability.live_gateway import start_live_gateway

__all__ = ["start_live_gateway"]  # the fixture, for the tests here to ask for by name
