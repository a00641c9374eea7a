"""A small per-process cache whose entries expire a few seconds after they are stored.

The gateway keeps what every request reads (API keys, provider credentials, router rows, the
catalog) in process for a second or a few, so that a change reaches every worker within that
time without a database read per request. One rule for all of them: an entry is fresh until
its time-to-live, read from settings when it is stored (tests shorten it), has passed; the
cache is emptied whole when it reaches ``max_entries`` (bounded memory under a flood of
unknown keys, which are cached too: "no such key" is an answer). Not thread-safe beyond what a
``dict`` is: a lost race costs one extra load, never a wrong answer.

Refresh ahead (``refresh_ahead``): in a serving process, a request that finds an entry in the
last fifth of its life starts one reload of it in the background and is served the entry,
still fresh. Under steady traffic no request waits for a reload (they were most of the tail at
concurrency 1: README, "Where the time went"), and nothing is served older than before: the
entry still expires at its time-to-live, and the reload's value counts from when it is stored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import Enum
from typing import Generic, Literal, TypeVar

from asgiref.sync import sync_to_async

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

logger = logging.getLogger(__name__)

# A loader: a function (run in a thread) or a coroutine function (awaited on the loop).
Load = Callable[[K], V] | Callable[[K], Awaitable[V]]

REFRESH_AT = 0.8  # the share of its time-to-live after which an entry is due for a reload


class Miss(Enum):
    """What a lookup returns for a key that has no (fresh) entry: cached values may be None."""

    MISS = "miss"


MISS: Literal[Miss.MISS] = Miss.MISS


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: Callable[[], float], *, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, float, V]] = {}  # (refresh at, expires at, value)
        self._reloading: set[K] = set()
        self.generation = 0  # moves on every clear: a reload begun before it is not stored

    def __len__(self) -> int:
        """Entries stored, expired or not (an empty cache is falsy)."""
        return len(self._entries)

    def get(self, key: K) -> V | Literal[Miss.MISS]:
        """The value stored for ``key`` if it has not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return MISS
        return entry[2]

    def get_stale(self, key: K) -> V | Literal[Miss.MISS]:
        """The value last stored for ``key``, expired or not."""
        entry = self._entries.get(key)
        return MISS if entry is None else entry[2]

    def put(self, key: K, value: V, *, generation: int | None = None) -> None:
        """Store ``value``; with ``generation``, only if the cache was not cleared since."""
        self._reloading.discard(key)
        if generation is not None and generation != self.generation:
            return
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._entries.clear()
        ttl = self._ttl()
        now = time.monotonic()
        self._entries[key] = (now + ttl * REFRESH_AT, now + ttl, value)

    def reload_due(self, key: K) -> bool:
        """True once for a fresh entry past its refresh point (until it is stored again)."""
        entry = self._entries.get(key)
        if entry is None or key in self._reloading or not entry[0] <= time.monotonic() < entry[1]:
            return False
        self._reloading.add(key)
        return True

    def reload_failed(self, key: K) -> None:
        self._reloading.discard(key)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._reloading.clear()


class _RefreshAhead:
    enabled = False  # set by a serving process at startup (routing.gateway.app)
    tasks: set[asyncio.Task[None]] = set()


def refresh_ahead_enable(enabled: bool = True) -> None:
    """Turn background reloads on in this process (its event loop serves requests)."""
    _RefreshAhead.enabled = enabled


def refresh_ahead(cache: TtlCache[K, V], key: K, load: Load[K, V]) -> None:
    """Start reloading ``key`` with ``load`` (in a thread, or awaited on the loop when it is a
    coroutine function) if its entry is due; never waits.
    At most one reload per entry is in flight, so their number is bounded by the cache's."""
    if not _RefreshAhead.enabled or not cache.reload_due(key):
        return
    task = asyncio.get_running_loop().create_task(_reload(cache, key, load, cache.generation))
    _RefreshAhead.tasks.add(task)
    task.add_done_callback(_RefreshAhead.tasks.discard)


async def _reload(cache: TtlCache[K, V], key: K, load: Load[K, V], generation: int) -> None:
    try:
        if inspect.iscoroutinefunction(load):
            value = await load(key)
        else:
            value = await sync_to_async(load, thread_sensitive=False)(key)
    except BaseException as exc:
        cache.reload_failed(key)  # the entry expires as usual; a request then loads it itself
        if not isinstance(exc, Exception):
            raise
        logger.warning("background reload of a cached entry failed: %s", type(exc).__name__)
        return
    cache.put(key, value, generation=generation)


async def refresh_ahead_stop(timeout: float = 5.0) -> None:
    """On shutdown: stop starting reloads and let this loop's in flight finish (bounded). Another
    event loop's (another server in the process) are its own shutdown's: waited for from here,
    each held this stop to its whole bound, never woken by a task done on another thread."""
    _RefreshAhead.enabled = False
    loop = asyncio.get_running_loop()
    # A copy first (one C call under the GIL): other loops' threads add and discard meanwhile.
    mine = {task for task in set(_RefreshAhead.tasks) if task.get_loop() is loop}
    if mine:
        await asyncio.wait(mine, timeout=timeout)
