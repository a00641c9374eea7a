"""What a lone request waits behind (issue 21), not part of ``make bench``: RouterHub's production
server with every chat request's phases timed in its workers, c=1 against the 0 ms upstream.

    python -m bench.tail_probe [--requests 2000] [--runs 3]

py-spy cannot attribute a 5 ms stall that happens once in a hundred requests, so this wraps the
app (``application`` below, served instead of ``routerhub.asgi:application``) and the settler
(``--settler``, started by ``bench/tail_probe_conf.py`` where gunicorn would start
``manage.py usage_settler``, in the same session) and records, all on CLOCK_MONOTONIC:

* per request, in the worker: when it arrived and was answered, the time in each step of
  ``routing.gateway.chat`` (and when the step began), every thread hop the request itself
  awaited for a cache reload, the worker thread's CPU time and its time waiting for a CPU
  (``/proc/thread-self/schedstat``);
* per worker, what ran beside the requests: background cache reloads, Redis pipelines (the
  outbox's XADD), rate-limit lease calls and garbage collections;
* in the settler: each batch (read, settle, the account row's lock until commit, the WAL
  flush it forces, the acknowledgement) with its CPU time;
* in the load generator: when each request was sent and how long it took.

``bench/tail_report.py`` then tells, for the slowest 1% of the requests the client saw, what
each overlapped, against how often the same thing overlaps any request.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out" / "tail"
_current: dict[str, dict[str, float] | None] = {"request": None}
_records: list[dict[str, float]] = []
_events: list[tuple[str, float, float]] = []  # (kind, start, end) beside the requests
MAX_RECORDS, MAX_EVENTS = 200_000, 400_000  # memory bound: the probe's runs stay far below


def _add(name: str, seconds: float, started: float | None = None) -> None:
    request = _current["request"]
    if request is not None:
        request[name] = request.get(name, 0.0) + seconds
        if started is not None:
            request.setdefault(f"@{name}", started)


def _schedstat() -> tuple[int, int]:
    """This thread's nanoseconds on a CPU and waiting for one."""
    with open("/proc/thread-self/schedstat", "rb") as handle:  # noqa: PTH123
        run, wait, _ = handle.read().split()
    return int(run), int(wait)


def _wrap(module: Any, name: str, record: Any) -> None:
    """Replace the coroutine function ``module.name`` by one that passes each call's start and
    end (monotonic seconds) to ``record``."""
    inner = getattr(module, name)

    async def call(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await inner(*args, **kwargs)
        finally:
            record(started, time.monotonic())

    setattr(module, name, call)


def _timed(module: Any, name: str) -> None:
    """Add every call of ``module.name`` to the current request's step ``name``."""
    _wrap(module, name, lambda started, ended: _add(name, ended - started, started))


def _hops(module: Any, name: str) -> None:
    original = module.sync_to_async

    def hop(fn: Any, **options: Any) -> Any:
        call = original(fn, **options)

        async def waited(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return await call(*args, **kwargs)
            finally:
                _add(name, time.monotonic() - started, started)

        return waited

    module.sync_to_async = hop


def _beside(module: Any, name: str, kind: str) -> None:
    """Record every call of the coroutine function ``module.name`` as an event ``kind``."""
    _wrap(module, name, lambda started, ended: _events.append((kind, started, ended)))


def _install() -> Any:
    """Wrap the steps, the cache modules' thread hops and what runs beside requests; return
    the production app."""
    from routerhub import asgi

    app = asgi.application  # imported first: it sets Django up for the modules below
    import redis.asyncio.client

    import accounts.keys
    from routerhub import ttl_cache
    from routing import routers
    from routing.gateway import catalog_cache, chat, credentials, exchange, limits

    for name in ("authenticate", "catalog_get", "plan_request", "rate_limit_admit", "attempt"):
        _timed(chat, name)
    _timed(chat.metering, "hold")
    _timed(exchange.metering, "record")
    for module, name in ((accounts.keys, "wait_key"), (catalog_cache, "wait_catalog"),
                         (credentials, "wait_byok"), (routers, "wait_router")):  # fmt: skip
        _hops(module, name)
    _beside(ttl_cache, "_reload", "reload")
    _beside(limits, "_lease_more", "lease")
    _beside(redis.asyncio.client.Pipeline, "execute", "redis_pipeline")
    gc_started: list[float] = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.monotonic()
        else:
            _events.append((f"gc{info['generation']}", gc_started[0], time.monotonic()))

    gc.callbacks.append(collected)
    return app


def _dump(kind: str, data: Any) -> None:
    path = OUT / f"{kind}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


_app: Any = None


async def application(scope: Any, receive: Any, send: Any) -> None:
    global _app
    if _app is None:
        _app = _install()
    if scope["type"] == "lifespan":
        await _app(scope, receive, _dump_at_shutdown(send))
        return
    if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
        await _app(scope, receive, send)
        return
    run0, wait0 = _schedstat()
    request: dict[str, float] = {"t0": time.monotonic()}
    _current["request"] = request

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            request["answered"] = time.monotonic() - request["t0"]
            run1, wait1 = _schedstat()
            request["oncpu"], request["runq"] = (run1 - run0) / 1e9, (wait1 - wait0) / 1e9
        await send(message)

    try:
        await _app(scope, receive, sending)
    finally:
        _current["request"] = None
        if len(_records) < MAX_RECORDS:
            _records.append(request)


def _dump_at_shutdown(send: Any) -> Any:
    """The lifespan's ``send``, writing this worker's records once, when the app has shut down
    (uvicorn re-raises the SIGTERM after that, so no exit hook would run). The records were
    dumped on the request path every 250 requests before: 9-40 ms of CPU each, growing with
    the records, and a good part of the slowest 1% they were meant to explain."""

    async def sending(message: Any) -> None:
        if message["type"] == "lifespan.shutdown.complete" and (_records or _events):
            _dump("worker", {"records": _records, "events": _events[-MAX_EVENTS:]})
        await send(message)

    return sending


# --- the settler ----------------------------------------------------------------------------------


def _settler_wrap(events: list[tuple[str, float, float]]) -> None:
    from billing import outbox, outbox_entries, settlement, wal

    def timed(module: Any, name: str, kind: str) -> None:
        inner = getattr(module, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.monotonic(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                end = time.monotonic()
                events.append((kind, started, end))
                events.append((f"{kind}_cpu", started, started + time.process_time() - cpu))

        setattr(module, name, call)

    timed(outbox_entries, "usage_settle_batch", "settle")
    timed(outbox, "_acknowledge_durable", "ack")
    timed(outbox, "wal_flush_force", "wal_flush")
    timed(wal, "wal_flush_force", "wal_flush")
    # The account row is locked from its charging statement to the commit: the end of that
    # statement's function to the end of ``settle`` (the report pairs them).
    timed(settlement, "_charge_locking_last", "charge")


def settler_main() -> None:
    """``manage.py usage_settler`` with its batches recorded (started by tail_probe_conf)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
    import django

    django.setup()
    from billing.outbox import usage_settler_run

    events: list[tuple[str, float, float]] = []
    _settler_wrap(events)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # Written once, after its last batch: a dump every second took the settler's CPU (and a
    # core's time) from the requests it is measured beside.
    usage_settler_run(stop)
    _dump("settler", {"events": events[-MAX_EVENTS:]})


# --- the run ------------------------------------------------------------------------------------


def main() -> None:
    from bench import gateway, tail_report
    from bench.procs import Proc

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    parser.add_argument("--settler", action="store_true", help="(internal) the recorded settler")
    args = parser.parse_args()
    if args.settler:
        settler_main()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    procs: list[Proc] = []
    try:
        target, _ = gateway.routerhub_alone(
            args.workers, OUT, procs, "bench.tail_probe:application",
            config="bench/tail_probe_conf.py",
        )  # fmt: skip
        before = tail_report.pg_counters()
        for run in range(args.runs):
            print(f"run {run + 1}: load average {os.getloadavg()[0]:.1f}", flush=True)
            trace = OUT / f"client-{run}.json"
            gateway.loadgen("latency", target, 0, "--requests", str(args.requests),
                            "--max-seconds", "600", "--trace", str(trace))  # fmt: skip
        time.sleep(1.5)  # the last batch settles
        after = tail_report.pg_counters()
    finally:
        for proc in reversed(procs):
            proc.stop()  # the workers and the settler write their records as they exit
    print(tail_report.report(OUT))
    print(tail_report.pg_difference(before, after))


if __name__ == "__main__":
    main()
