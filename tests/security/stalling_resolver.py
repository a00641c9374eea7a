"""Names that never answer while a test runs: ``socket.getaddrinfo`` replaced in-process (there
is no DNS server here to stall), each test on a fresh resolver pool of ``routing.resolvers``."""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from routing.resolvers import _Gateway, _Resolvers

STALLED = "stalled.example"  # this name and every name under it (``a.stalled.example``)
SLOW = "slow.example"  # answers 127.0.0.1 after ``SLOW_SECONDS``, each lookup
SLOW_SECONDS = 0.2


class StallingResolver:
    """``socket.getaddrinfo`` for ``STALLED`` names blocks until the test releases it (then
    answers 127.0.0.1); every other name resolves as usual, as does a numeric-only call
    (``AI_NUMERICHOST``: a name fails at once)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()  # a stalled lookup returned
        self.entered = 0  # stalled lookups started
        self.slow = 0  # slow lookups started
        self.lock = threading.Lock()  # lookups run in several threads at once
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        numeric_only = kwargs.get("flags", 0) & socket.AI_NUMERICHOST  # never blocks: no lookup
        if not numeric_only and host == SLOW:
            with self.lock:
                self.slow += 1
            time.sleep(SLOW_SECONDS)
            return self.real("127.0.0.1", port, *args, **kwargs)
        if numeric_only or (host != STALLED and not str(host).endswith("." + STALLED)):
            return self.real(host, port, *args, **kwargs)
        with self.lock:
            self.entered += 1
        # Bounded so that the old code (which waited for the lookup) fails instead of hanging.
        self.release.wait(15)
        self.finished.set()
        return self.real("127.0.0.1", port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingResolver]:
    stalling = StallingResolver()
    monkeypatch.setattr(socket, "getaddrinfo", stalling)
    # A pool and bookkeeping of its own: no thread, organization or stalled name of another
    # test, none of this test's left behind.
    monkeypatch.setattr(_Resolvers, "pool", None)
    monkeypatch.setattr(_Resolvers, "running", 0)
    monkeypatch.setattr(_Resolvers, "tenants", {})
    monkeypatch.setattr(_Resolvers, "stalled", collections.OrderedDict())
    for name, value in (("pool", None), ("size", 0), ("running", 0), ("flights", {})):
        monkeypatch.setattr(_Gateway, name, value)
    monkeypatch.setattr(_Gateway, "tenants", {})
    yield stalling
    stalling.release.set()
    for pool in (_Resolvers.pool, _Gateway.pool):
        if pool is not None:
            pool.shutdown(wait=True)
