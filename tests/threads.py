"""Calls run at the same moment, each in its own thread with its own database connection: how
race tests make two writers meet (a barrier inside the calls forces the interleaving)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

JOIN_TIMEOUT_S = 30.0
BARRIER_TIMEOUT_S = 2.0


def run_at_once(calls: list[Callable[[], Any]]) -> list[BaseException | None]:
    """Start every call in a thread, wait for them all; what each raised (``None``: returned)."""
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            calls[index]()
        except BaseException as exc:  # reported to the test
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOIN_TIMEOUT_S)
    return outcomes


def meet_after(monkeypatch: Any, owner: Any, name: str, parties: int) -> None:
    """Make ``owner.name`` (a check a race hides behind) wait, once done, for ``parties`` callers
    to have done it too: it forces the interleaving a missing lock lets through. Callers kept
    apart by a lock never meet; the barrier then times out and the first goes on alone."""
    barrier = threading.Barrier(parties)
    check = getattr(owner, name)

    def check_then_meet(*args: Any, **kwargs: Any) -> Any:
        result = check(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=BARRIER_TIMEOUT_S)
        return result

    monkeypatch.setattr(owner, name, check_then_meet)
