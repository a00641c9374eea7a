"""What a lone request waits behind (issue 21), not part of ``make bench``: RouterHub's production
server with every chat request's phases timed in its workers, c=1 against the 0 ms upstream.

    python -m bench.tail_probe [--requests 2000]

py-spy is not installed in .venv and ``perf`` cannot see Python 3.11's frames, so this wraps
the app (``application`` below, served instead of ``routerhub.asgi:application``) and records
per request: the time to the last body byte, the time in each step of ``routing.gateway.chat``,
every thread hop the request itself awaited for a cache reload (API key, catalog, BYOK keys,
router row: background reloads are not counted) and every garbage collection during it. Then
it prints how the slowest 1% differ from the median requests, and how often each wait occurred.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
_current: dict[str, dict[str, float] | None] = {"request": None}
_records: list[dict[str, float]] = []


def _add(name: str, seconds: float) -> None:
    request = _current["request"]
    if request is not None:
        request[name] = request.get(name, 0.0) + seconds


def _install() -> Any:
    """Wrap the steps and the cache modules' thread hops; return the production app."""
    from routerhub import asgi

    app = asgi.application  # imported first: it sets Django up for the modules below
    import accounts.keys
    from routing import routers
    from routing.gateway import catalog_cache, chat, credentials, exchange

    def timed(module: Any, name: str) -> None:
        inner = getattr(module, name)

        async def step(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                _add(name, time.perf_counter() - started)

        setattr(module, name, step)

    def hops(module: Any, name: str) -> None:
        original = module.sync_to_async

        def hop(fn: Any, **options: Any) -> Any:
            call = original(fn, **options)

            async def waited(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await call(*args, **kwargs)
                finally:
                    _add(name, time.perf_counter() - started)

            return waited

        module.sync_to_async = hop

    for name in ("authenticate", "catalog_get", "plan_request", "rate_limit_admit"):
        timed(chat, name)
    timed(chat.metering, "hold")
    timed(exchange.metering, "record")
    for module, name in ((accounts.keys, "wait_key"), (catalog_cache, "wait_catalog"),
                         (credentials, "wait_byok"), (routers, "wait_router")):  # fmt: skip
        hops(module, name)
    gc_started: list[float] = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            _add(f"gc{info['generation']}", time.perf_counter() - gc_started[0])

    gc.callbacks.append(collected)
    return app


def _dump() -> None:
    path = OUT / f"tail-probe-{os.getpid()}.json"
    path.write_text(json.dumps(_records[-50_000:]))


_app: Any = None


async def application(scope: Any, receive: Any, send: Any) -> None:
    global _app
    if _app is None:
        _app = _install()
    if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
        await _app(scope, receive, send)
        return
    request: dict[str, float] = {"t0": time.perf_counter()}
    _current["request"] = request

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            request["answered"] = time.perf_counter() - request["t0"]
        await send(message)

    try:
        await _app(scope, receive, sending)
    finally:
        _current["request"] = None
        _records.append(request)
        if len(_records) % 250 == 0:
            _dump()


def report(paths: list[str]) -> str:
    records = [r for p in paths for r in json.loads(Path(p).read_text()) if "answered" in r]
    records.sort(key=lambda r: r["answered"])
    n = len(records)
    if not n:
        return "no requests recorded"
    slow, middle = records[int(0.99 * n) :], records[int(0.4 * n) : int(0.6 * n)]
    lines = [f"{n} requests; answered p50 {records[n // 2]['answered'] * 1000:.2f} ms, "
             f"p99 {records[int(0.99 * n)]['answered'] * 1000:.2f} ms", "",
             f"{'step':<17}{'p40-p60 mean ms':>16}{'slowest 1% mean ms':>20}{'in slowest 1%':>15}"]  # fmt: skip
    names = sorted({k for r in records for k in r} - {"t0", "answered"})
    for name in names:
        mid = statistics.mean(r.get(name, 0.0) for r in middle) * 1000
        tail = statistics.mean(r.get(name, 0.0) for r in slow) * 1000
        share = sum(1 for r in slow if name in r) / len(slow) * 100
        lines.append(f"{name:<17}{mid:>16.2f}{tail:>20.2f}{share:>14.0f}%")
    lines.append("")
    for name in [k for k in names if k.startswith(("wait_", "gc"))]:
        hits = [r[name] for r in records if name in r]
        lines.append(f"{name:<13} in {len(hits) / n * 100:5.2f}% of requests ({len(hits)}), "
                     f"mean {statistics.mean(hits) * 1000:.2f} ms")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    from bench import gateway
    from bench.procs import Proc

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=gateway.Options.workers)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("tail-probe-*.json"):
        old.unlink()
    procs: list[Proc] = []
    try:
        target, _ = gateway.routerhub_alone(
            args.workers, OUT, procs, "bench.tail_probe:application"
        )
        print(f"load average {os.getloadavg()[0]:.1f}")
        gateway.loadgen("latency", target, 0, "--requests", str(args.requests),
                        "--max-seconds", "600")  # fmt: skip
    finally:
        for proc in reversed(procs):
            proc.stop()
    print(report([str(p) for p in OUT.glob("tail-probe-*.json")]))


if __name__ == "__main__":
    main()
