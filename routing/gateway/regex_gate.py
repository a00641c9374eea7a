"""A pipeline's regex gate, run where a catastrophic pattern cannot stall the gateway.

Python's ``re`` backtracks and holds the GIL for a whole search: a tenant's pattern like
``(a+)+$`` over a few dozen characters would stop every request of the worker (a thread does
not help; measured, it blocks the event loop as much). So the search runs in a small worker
process (one per event loop, started on first use, a plain ``python -c`` that imports only
``re`` and ``json``), one search at a time, with a deadline of ``PIPELINE_REGEX_TIMEOUT``
seconds: past it the worker is killed (the next search starts a new one) and the gate counts as
failed (``regex_gate_search`` returns None). The worker exits when the gateway does (its stdin
closes).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field

import orjson
from django.conf import settings

logger = logging.getLogger(__name__)

_WORKER = (
    "import json, re, sys\n"
    "for line in sys.stdin:\n"
    "    ask = json.loads(line)\n"
    "    found = re.search(ask['pattern'], ask['text']) is not None\n"
    "    sys.stdout.write('1\\n' if found else '0\\n')\n"
    "    sys.stdout.flush()\n"
)


@dataclass
class _Worker:
    loop: asyncio.AbstractEventLoop
    process: asyncio.subprocess.Process | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_workers: dict[int, _Worker] = {}  # by id(event loop)


async def regex_gate_search(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` is found in ``text``; None when the search ran past its deadline
    (or the worker could not run it)."""
    worker = _worker_for(asyncio.get_running_loop())
    async with worker.lock:
        try:
            await _started(worker)  # outside the deadline: a process start is not the search's
            async with asyncio.timeout(settings.PIPELINE_REGEX_TIMEOUT):
                return await _ask(worker, pattern, text)
        except (TimeoutError, OSError, ValueError):
            logger.warning(
                "a regex gate ran past %ss; it counts as failed", settings.PIPELINE_REGEX_TIMEOUT
            )
            await _stop(worker)
            return None
        except asyncio.CancelledError:
            _kill(worker)  # its answer would be read by the next search
            raise


def _worker_for(loop: asyncio.AbstractEventLoop) -> _Worker:
    worker = _workers.get(id(loop))
    if worker is None or worker.loop is not loop:
        worker = _workers[id(loop)] = _Worker(loop)
    return worker


async def _started(worker: _Worker) -> None:
    """Start the worker if it is not running, and wait until it reads its first search."""
    if worker.process is not None and worker.process.returncode is None:
        return
    worker.process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        _WORKER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    await _ask(worker, "", "")  # the interpreter is up and re is imported


async def _ask(worker: _Worker, pattern: str, text: str) -> bool:
    process = worker.process
    assert process is not None and process.stdin is not None and process.stdout is not None
    process.stdin.write(orjson.dumps({"pattern": pattern, "text": text}) + b"\n")
    await process.stdin.drain()
    answer = await process.stdout.readline()
    if answer not in (b"0\n", b"1\n"):
        raise ValueError("the regex worker did not answer")
    return answer == b"1\n"


async def _stop(worker: _Worker) -> None:
    process = _kill(worker)
    if process is not None:
        await process.wait()


def _kill(worker: _Worker) -> asyncio.subprocess.Process | None:
    process, worker.process = worker.process, None
    if process is not None and process.returncode is None:
        process.kill()
    return process
