"""A name that never answers while a test runs: ``socket.getaddrinfo`` replaced in-process (there
is no DNS server here to stall), each test on a fresh resolver pool of ``routing.egress``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from routing.egress import _Resolvers

STALLED = "stalled.example"


class StallingResolver:
    """``socket.getaddrinfo`` for ``STALLED`` blocks until the test releases it (then answers
    127.0.0.1); every other name resolves as usual."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()  # a stalled lookup returned
        self.entered = 0  # stalled lookups started
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != STALLED:
            return self.real(host, port, *args, **kwargs)
        self.entered += 1
        # Bounded so that the old code (which waited for the lookup) fails instead of hanging.
        self.release.wait(15)
        self.finished.set()
        return self.real("127.0.0.1", port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingResolver]:
    stalling = StallingResolver()
    monkeypatch.setattr(socket, "getaddrinfo", stalling)
    # A pool of its own: no thread another test's lookup holds, none of this test's left behind.
    monkeypatch.setattr(_Resolvers, "pool", None)
    yield stalling
    stalling.release.set()
    if _Resolvers.pool is not None:
        _Resolvers.pool.shutdown(wait=True)
