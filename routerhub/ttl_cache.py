"""A small per-process cache whose entries expire a few seconds after they are stored.

The gateway keeps what every request reads (API keys, provider credentials, router rows, the
catalog) in process for a second or a few, so that a change reaches every worker within that
time without a database read per request. One rule for all of them: an entry is fresh until
its time-to-live, read from settings when it is stored (tests shorten it), has passed; the
cache is emptied whole when it reaches ``max_entries`` (bounded memory under a flood of
unknown keys, which are cached too: "no such key" is an answer). Not thread-safe beyond what a
``dict`` is: a lost race costs one extra load, never a wrong answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from enum import Enum
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Miss(Enum):
    """What a lookup returns for a key that has no (fresh) entry: cached values may be None."""

    MISS = "miss"


MISS: Literal[Miss.MISS] = Miss.MISS


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: Callable[[], float], *, max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | Literal[Miss.MISS]:
        """The value stored for ``key`` if it has not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            return MISS
        return entry[1]

    def get_stale(self, key: K) -> V | Literal[Miss.MISS]:
        """The value last stored for ``key``, expired or not."""
        entry = self._entries.get(key)
        return MISS if entry is None else entry[1]

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl(), value)

    def clear(self) -> None:
        self._entries.clear()
