"""Pipeline gates run in a bounded pool of worker processes per event loop
(``routing.gateway.regex_gate``): one tenant's runaway pattern holds one worker, not every other
gate of the gateway worker; the pool never grows past ``PIPELINE_GATE_WORKERS``; the workers of
an event loop that has closed are killed, not left running."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from routing.gateway.regex_gate import regex_gate_search
from tests.routing.servers import poll

STALLING = ("^(a+)+$", "a" * 40 + "!")  # hours of backtracking: always past the deadline


def gate_workers() -> set[int]:
    """This process's live (not zombie) gate worker processes."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if int(ppid) == os.getpid() and b"jsonschema" in command and state != "Z":
            found.add(int(entry.name))
    return found


def test_a_stalled_gate_holds_one_worker_not_every_other_gate(settings: Any) -> None:
    settings.PIPELINE_REGEX_TIMEOUT = 0.5
    settings.PIPELINE_GATE_WORKERS = 2

    async def both() -> tuple[bool | None, bool | None]:
        stalled = asyncio.create_task(regex_gate_search(*STALLING))
        await asyncio.sleep(0)  # the stalled check takes a worker first
        benign = await regex_gate_search("tea", "green tea")
        return await stalled, benign

    assert asyncio.run(both()) == (None, True)


def test_the_pool_is_bounded_and_its_workers_reused(settings: Any) -> None:
    settings.PIPELINE_REGEX_TIMEOUT = 5.0
    settings.PIPELINE_GATE_WORKERS = 2
    before = gate_workers()

    async def many() -> tuple[list[bool | None], set[int]]:
        found = await asyncio.gather(*(regex_gate_search("a", "a" * n) for n in range(1, 41)))
        return list(found), gate_workers() - before

    found, started = asyncio.run(many())

    assert found == [True] * 40
    assert 1 <= len(started) <= 2


def test_the_workers_of_a_closed_event_loop_are_killed(settings: Any) -> None:
    settings.PIPELINE_GATE_WORKERS = 2
    before = gate_workers()
    assert asyncio.run(regex_gate_search("tea", "green tea")) is True
    first_loops = gate_workers() - before
    assert first_loops  # the closed loop's worker, still running

    assert asyncio.run(regex_gate_search("tea", "black tea")) is True  # a new loop

    assert poll(lambda: not (gate_workers() & first_loops) or None)


def test_a_check_on_a_loop_that_has_its_pool_kills_a_closed_loops_workers(settings: Any) -> None:
    settings.PIPELINE_GATE_WORKERS = 2
    long_lived = asyncio.new_event_loop()
    thread = threading.Thread(target=long_lived.run_forever, daemon=True)
    thread.start()

    def on_long_lived(text: str) -> bool | None:
        return asyncio.run_coroutine_threadsafe(regex_gate_search("tea", text), long_lived).result(
            timeout=10
        )

    try:
        assert on_long_lived("green tea") is True  # the long-lived loop's pool, kept
        before = gate_workers()
        assert asyncio.run(regex_gate_search("tea", "black tea")) is True  # its loop closes
        closed_loops = gate_workers() - before
        assert closed_loops  # the closed loop's worker, still running

        assert on_long_lived("white tea") is True  # a loop whose pool already exists

        assert poll(lambda: not (gate_workers() & closed_loops) or None)
    finally:
        long_lived.call_soon_threadsafe(long_lived.stop)
        thread.join(timeout=10)
        long_lived.close()  # its workers go with the next check on another loop
