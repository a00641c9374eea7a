"""What one chat request costs the gateway worker itself (issue 21; not part of ``make bench``):
the production app called in this process, one request at a time, against the 0 ms fake
upstream with real PostgreSQL and Redis — no HTTP server, no load generator, so the numbers do
not depend on what else shares the machine as much as latencies do.

    python -m bench.path_cost [--requests 3000] [--profile]

Prints per request: the thread's CPU time (median), tracked objects allocated and left for the
garbage collector (reference cycles: what makes young collections come), and with ``--profile``
cProfile's top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench import gateway, loadgen
from bench.procs import Proc

OUT = Path(__file__).resolve().parent / "out" / "path_cost"


class _Client:
    """One request's ASGI receive/send, as uvicorn does them: the body, then (once the response
    is complete) a disconnect."""

    def __init__(self, body: bytes) -> None:
        self.body: bytes | None = body
        self.complete = asyncio.Event()
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.complete.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif not message.get("more_body"):
            self.complete.set()


async def _serve(app: Any, key: str, requests: int, each: Any) -> list[float]:
    _, _, payload = loadgen.build_request("http://127.0.0.1:1/v1/chat/completions", key,
                                          "demo/small", stream=False)  # fmt: skip
    body = payload.split(b"\r\n\r\n", 1)[1]
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"authorization", f"Bearer {key}".encode()),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}  # fmt: skip
    cpu = []
    for _ in range(requests):
        client = _Client(body)
        with each():
            t0 = time.thread_time()
            await app(dict(scope), client.receive, client.send)
            cpu.append(time.thread_time() - t0)
        if client.status != 200:
            raise RuntimeError(f"status {client.status}")
        await asyncio.sleep(0.0005)  # the client's turn (its next request), as at c=1
    return cpu


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


async def _measure(key: str, args: Any) -> None:
    from routerhub.asgi import application

    startup: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    life = asyncio.ensure_future(application({"type": "lifespan"}, startup.get, lifespan_send))
    await started.wait()
    await _serve(application, key, 500, _Nothing)  # warm: caches, pools, code paths
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    count0 = gc.get_count()[0]
    cpu = await _serve(application, key, 200, _Nothing)
    left = gc.get_count()[0] - count0
    gc.collect()
    garbage = collections.Counter(type(o).__qualname__ for o in gc.garbage)
    gc.set_debug(0)
    gc.garbage.clear()
    gc.collect()
    print(f"left for the collector per request: {len(garbage and list(garbage.elements())) / 200:.1f} "
          f"objects in cycles; young-generation count +{left / 200:.1f} per request")  # fmt: skip
    for name, n in garbage.most_common(25):
        print(f"  {n / 200:6.2f}  {name}")
    cpu = await _serve(application, key, args.requests, _Nothing)
    print(f"thread CPU per request: median {statistics.median(cpu) * 1e3:.3f} ms, "
          f"p90 {statistics.quantiles(cpu, n=10)[-1] * 1e3:.3f} ms over {len(cpu)}")  # fmt: skip
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.thread_time)  # CPU, not waits or preemption
        profiler.enable()
        await _serve(application, key, args.requests, _Nothing)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
    await startup.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(life, 30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        fake, upstream = gateway.start_fake(0, OUT)
        procs.append(fake)
        env = gateway.routerhub_env(upstream)
        key, _ = gateway.setup_routerhub_db(env, OUT)
        env["USAGE_SETTLER"] = "process"  # as under gunicorn: the settler is a process beside
        procs.append(Proc("settler", [str(gateway.PY), "manage.py", "usage_settler"], env=env,
                          cwd=gateway.REPO, log_dir=OUT))  # fmt: skip
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "routerhub.settings"
        import uvloop

        uvloop.run(_measure(key, args))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
