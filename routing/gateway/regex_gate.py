"""A pipeline's regex and JSON-schema gates, run where a catastrophic check cannot stall the
gateway.

Python's ``re`` backtracks and holds the GIL for a whole search: a tenant's pattern like
``(a+)+$`` over a few dozen characters would stop every request of the worker (a thread does
not help; measured, it blocks the event loop as much). A JSON schema is no safer: its
``pattern`` and ``patternProperties`` are the same ``re`` searches (``^(a+)+$`` against 24
characters held the loop 1.9 s, each added character doubles it), ``uniqueItems`` over an
array of objects compares every pair, and a ``$ref`` can recurse or name a document that
cannot be resolved (an exception). So both checks run in small worker processes (a plain
``python -c`` that imports ``re``, ``json`` and ``jsonschema``), each one check at a time, with
a deadline of ``PIPELINE_REGEX_TIMEOUT`` seconds: past it the worker is killed and the gate
counts as failed (``regex_gate_search`` and ``schema_gate_check`` return None). Each event loop
has a pool of up to ``PIPELINE_GATE_WORKERS`` of them, started on first use and kept: a check
takes an idle one, so one tenant's runaway pattern holds one worker for its deadline while the
others check every other pipeline's gates. With every worker busy a check waits no longer than the deadline (then it is None too, ``gate_timeout``).
A schema that raises, or an answer nested past the 255 levels ``orjson`` writes (it reads 1024),
is undecidable (``schema_gate_check`` returns ``UNDECIDABLE``). Workers exit when the gateway
does (their stdin closes); those of an event loop that has closed (a server thread's, or a
``async_to_sync`` call's) are killed by the next check on any other loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

logger = logging.getLogger(__name__)

# ``registry``: a ``$ref`` resolves only inside the schema. jsonschema's default registry still
# fetches any other URI with ``urlopen`` (deprecated, not yet removed): a tenant's gate could
# have the gateway's host GET the cloud metadata address or an internal service, or read a file.
_WORKER = (
    "import json, re, sys\n"
    "import jsonschema, referencing, referencing.exceptions\n"
    "def refuse(uri):\n"
    "    raise referencing.exceptions.NoSuchResource(ref=uri)\n"
    "registry = referencing.Registry(retrieve=refuse)\n"
    "for line in sys.stdin:\n"
    "    ask = json.loads(line)\n"
    "    try:\n"
    "        if 'schema' in ask:\n"
    "            v = jsonschema.Draft202012Validator(ask['schema'], registry=registry)\n"
    "            found = v.is_valid(ask['value'])\n"
    "        else:\n"
    "            found = re.search(ask['pattern'], ask['text']) is not None\n"
    "        answer = '1\\n' if found else '0\\n'\n"
    "    except Exception:\n"
    "        answer = '?\\n'\n"
    "    sys.stdout.write(answer)\n"
    "    sys.stdout.flush()\n"
)
UNDECIDABLE = "undecidable"  # the check raised (a $ref it cannot resolve, a recursion) or the
# value is nested too deeply to be sent to the worker


@dataclass(eq=False)  # one per process: compared and hashed by identity
class _Worker:
    process: asyncio.subprocess.Process | None = None


@dataclass
class _Pool:
    """One event loop's workers: ``idle`` ones wait for a check; ``slots`` bounds them all."""

    loop: asyncio.AbstractEventLoop
    slots: asyncio.Semaphore
    idle: list[_Worker] = field(default_factory=list)
    running: set[_Worker] = field(default_factory=set)


_pools: dict[int, _Pool] = {}  # by id(event loop)


async def regex_gate_search(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` is found in ``text``; None when the search ran past its deadline
    (or the worker could not run it)."""
    found = await _check({"pattern": pattern, "text": text}, "a regex gate")
    return found if isinstance(found, bool) else None  # it compiled when the gate was saved


async def schema_gate_check(schema: Any, value: Any) -> bool | str | None:
    """Whether ``value`` is valid under the JSON ``schema`` (draft 2020-12); None when the check
    ran past its deadline, ``UNDECIDABLE`` when it raised."""
    return await _check({"schema": schema, "value": value}, "a JSON-schema gate")


async def _check(ask: dict[str, Any], what: str) -> bool | str | None:
    try:
        line = orjson.dumps(ask) + b"\n"
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels; it reads 1024)
        return UNDECIDABLE
    pool = _pool_for(asyncio.get_running_loop())
    try:  # queued behind other checks: no longer than one check may take
        async with asyncio.timeout(settings.PIPELINE_REGEX_TIMEOUT):
            await pool.slots.acquire()
    except TimeoutError:
        logger.warning(
            "%s waited past %ss for a gate worker", what, settings.PIPELINE_REGEX_TIMEOUT
        )
        return None
    worker = pool.idle.pop() if pool.idle else _Worker()
    pool.running.add(worker)
    try:
        await _started(worker)  # outside the deadline: a process start is not the check's
        async with asyncio.timeout(settings.PIPELINE_REGEX_TIMEOUT):
            return await _ask(worker, line)
    except (TimeoutError, OSError, ValueError):
        logger.warning(
            "%s ran past %ss; it counts as failed", what, settings.PIPELINE_REGEX_TIMEOUT
        )
        await _stop(worker)
        return None
    except asyncio.CancelledError:
        _kill(worker)  # its answer would be read by the next check
        raise
    finally:
        pool.running.discard(worker)
        if worker.process is not None:
            pool.idle.append(worker)
        pool.slots.release()


def _pool_for(loop: asyncio.AbstractEventLoop) -> _Pool:
    """The loop's pool (made on its first check); with other loops' pools about, the workers of
    those whose loop has closed are killed first (nobody will ask them again)."""
    if len(_pools) > 1 or id(loop) not in _pools:
        for key, stale in list(_pools.items()):
            if stale.loop.is_closed() and _pools.pop(key, None) is stale:  # one sweeper kills
                for worker in [*stale.idle, *stale.running]:
                    _forget(_kill(worker))
    pool = _pools.get(id(loop))  # a pool holds its loop: the id is never another loop's
    if pool is None:
        pool = _pools[id(loop)] = _Pool(loop, asyncio.Semaphore(settings.PIPELINE_GATE_WORKERS))
    return pool


async def _started(worker: _Worker) -> None:
    """Start the worker if it is not running, and wait until it reads its first check."""
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
    await _ask(worker, b'{"pattern": "", "text": ""}\n')  # the interpreter is up, its imports done


_ANSWERS: dict[bytes, bool | str] = {b"1\n": True, b"0\n": False, b"?\n": UNDECIDABLE}


async def _ask(worker: _Worker, line: bytes) -> bool | str:
    process = worker.process
    assert process is not None and process.stdin is not None and process.stdout is not None
    process.stdin.write(line)
    await process.stdin.drain()
    answer = _ANSWERS.get(await process.stdout.readline())
    if answer is None:
        raise ValueError("the gate worker did not answer")
    return answer


async def _stop(worker: _Worker) -> None:
    process = _kill(worker)
    if process is not None:
        await process.wait()


def _kill(worker: _Worker) -> asyncio.subprocess.Process | None:
    process, worker.process = worker.process, None
    if process is not None and process.returncode is None:
        process.kill()
    return process


def _forget(process: asyncio.subprocess.Process | None) -> None:
    """Close a killed worker's transport whose event loop has closed: asyncio closes its pipes
    by scheduling a call on that loop, which raises; marked closed, it is collected quietly
    (its pipes' file descriptors are closed when they are)."""
    if process is None:
        return
    with contextlib.suppress(RuntimeError):  # "Event loop is closed": pipes close when collected
        process._transport.close()  # type: ignore[attr-defined]
