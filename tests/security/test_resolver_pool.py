"""``routing.resolvers``' pool is made on first use, by whichever thread looks a name up first:
made under its lock, concurrent first lookups share one pool (before, each could make its own,
each with ``RESOLVER_THREADS`` threads, and the bound no longer held)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import pytest

from routing import resolvers
from tests.security.stalling_resolver import StallingResolver


def test_concurrent_first_lookups_make_one_pool(
    resolver: StallingResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []

    class SlowToMake(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # widens the window between "no pool yet" and "pool set"
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", SlowToMake)
    start = threading.Barrier(resolvers.RESOLVER_THREADS)

    def look_up() -> None:
        start.wait()
        resolvers.lookup("localhost", 80, 10)

    threads = [threading.Thread(target=look_up) for _ in range(resolvers.RESOLVER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    try:
        assert len(made) == 1
    finally:
        for pool in made:
            pool.shutdown(wait=True)
