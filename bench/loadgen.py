"""The load generator, run in its own process: a lean asyncio HTTP/1.1 keep-alive client.

httpx costs ~10x more CPU per request than the servers under test can afford to lose on a
2-core machine, so this speaks HTTP/1.1 directly (Content-Length and chunked bodies, SSE).

    python -m bench.loadgen latency    --url URL --key K --model M --requests 500 --warmup 50
    python -m bench.loadgen ttft       --url URL --key K --model M --requests 200 --warmup 20
    python -m bench.loadgen throughput --url URL --key K --model M --concurrency 16 --duration 30

Prints one JSON object. Only loopback targets are accepted; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

PROMPT = "Write one short sentence about benchmarks."
MAX_TOKENS = 48
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class HttpError(Exception):
    pass


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def added_ms(gateway: list[float], direct_runs: list[list[float]], q: float) -> float | None:
    """What a gateway adds at percentile ``q`` (ms): its percentile over its samples (ms) minus
    the median over ``direct_runs`` (the direct upstream's runs, interleaved with the gateway's)
    of each run's percentile. One direct run is a poor floor for a tail: the p99 of 500 requests
    is the 5th-slowest, and one run read 2.35 ms where the others read 0.52-0.65 ms; the median
    of three runs moves with none of them alone."""
    mine = percentile(gateway, q)
    floors = [floor for run in direct_runs if (floor := percentile(run, q)) is not None]
    if mine is None or not floors:
        return None
    return mine - statistics.median(floors)


def summary_ms(samples: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
            "p99": percentile(ms, 99), "mean": sum(ms) / len(ms) if ms else None}  # fmt: skip


class Conn:
    """One keep-alive connection; requests are sent one at a time (no pipelining)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, raw: bytes, *, stream: bool = False) -> tuple[int, float | None]:
        """Send ``raw``; return (status, seconds to first content event when ``stream``)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        first: float | None = None
        sse = _SseScanner() if stream else None
        if b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
            if sse is not None and sse.feed(body):
                first = time.perf_counter() - started
        elif headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                if sse is not None and first is None and sse.feed(chunk[:-2]):
                    first = time.perf_counter() - started
        else:
            await self.reader.read()  # body until close
            self.close()
            return status, first
        if headers.get(b"connection") == b"close":
            self.close()
        return status, first


class _SseScanner:
    """Find the first SSE event carrying generated content (OpenAI chunk with delta.content)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> bool:
        self.buffer += data
        while b"\n\n" in self.buffer:
            event, _, self.buffer = self.buffer.partition(b"\n\n")
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                with contextlib.suppress(
                    orjson.JSONDecodeError, AttributeError, IndexError, TypeError
                ):
                    choices = orjson.loads(payload).get("choices") or []
                    if choices and (choices[0].get("delta") or {}).get("content"):
                        return True
        return False


def build_request(url: str, key: str, model: str, *, stream: bool) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in _LOOPBACK:
        raise SystemExit(f"refusing to send load to {host!r}: loopback targets only")
    port = parts.port or 80
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": MAX_TOKENS}  # fmt: skip
    if stream:
        body["stream"] = True
    payload = orjson.dumps(body)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}",
             "Content-Type: application/json", f"Content-Length: {len(payload)}",
             "Accept: */*", "User-Agent: routerhub-bench"]  # fmt: skip
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def sequential(args: argparse.Namespace, *, stream: bool) -> dict[str, Any]:
    """Concurrency 1: ``warmup`` then ``requests`` timed one after the other (bounded by time)."""
    host, port, raw = build_request(args.url, args.key, args.model, stream=stream)
    conn = Conn(host, port)
    samples: list[float] = []
    errors = total_ok = 0
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + args.max_seconds
    trace: list[tuple[float, float]] = []  # (sent at, seconds) on CLOCK_MONOTONIC, for --trace
    for index in range(args.warmup + args.requests):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        try:
            status, first = await asyncio.wait_for(conn.request(raw, stream=stream), args.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError):  # fmt: skip
            conn.close()
            errors += index >= args.warmup
            continue
        elapsed = time.perf_counter() - started
        total_ok += status == 200
        if index < args.warmup:
            continue
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200 or (stream and first is None):
            errors += 1
            continue
        samples.append(first if stream else elapsed)  # type: ignore[arg-type]
        trace.append((time.monotonic() - elapsed, elapsed))
    conn.close()
    if args.trace:
        with open(args.trace, "w") as handle:  # noqa: PTH123
            json.dump(trace, handle)
    return {"mode": "ttft" if stream else "latency", "latency_ms": summary_ms(samples),
            "errors": errors, "statuses": statuses,
            "total_ok_including_warmup": total_ok}  # fmt: skip


def requests_for_keys(args: argparse.Namespace) -> tuple[str, int, list[bytes]]:
    """One request per key of ``--keys-file`` (one key a line), else the one ``--key``'s."""
    keys = [args.key]
    if args.keys_file:
        with open(args.keys_file) as handle:  # noqa: PTH123
            keys = [line.strip() for line in handle if line.strip()]
    host, port = "", 0
    raws = []
    for key in keys:
        host, port, raw = build_request(args.url, key, args.model, stream=False)
        raws.append(raw)
    return host, port, raws


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """``concurrency`` connections in closed loops: warm up, then count the answers that arrive
    within the next ``duration`` s.
    With ``--keys-file``, successive requests cycle through its keys."""
    host, port, raws = requests_for_keys(args)
    sent = 0
    start = time.monotonic()
    measure_from = start + args.warmup_seconds
    stop_at = measure_from + args.duration
    ok = errors = total_ok = 0
    statuses: dict[int, int] = {}
    samples: list[float] = []

    async def worker() -> None:
        nonlocal ok, errors, total_ok, sent
        conn = Conn(host, port)
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            began = time.perf_counter()
            raw = raws[sent % len(raws)]
            sent += 1
            try:
                status, _ = await asyncio.wait_for(conn.request(raw), args.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                    ValueError):  # fmt: skip
                conn.close()
                if measure_from <= time.monotonic() < stop_at:
                    errors += 1
                await asyncio.sleep(0.01)
                continue
            elapsed = time.perf_counter() - began
            total_ok += status == 200
            # Counted by when it finished: answers within the window, whenever they were sent
            # (at c=256 on a busy machine one request can take longer than the warm-up).
            if not measure_from <= time.monotonic() < stop_at:
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                ok += 1
                samples.append(elapsed)
            else:
                errors += 1
        conn.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(args.concurrency))),
        args.warmup_seconds + args.duration + args.timeout + 10,
    )
    measured = ok + errors
    return {"mode": "throughput", "concurrency": args.concurrency, "duration_s": args.duration,
            "ok": ok, "errors": errors, "requests": measured,
            "rps": ok / args.duration, "error_rate": errors / measured if measured else None,
            "latency_ms": summary_ms(samples), "statuses": statuses,
            "total_ok_including_warmup": total_ok,
            "elapsed_s": time.monotonic() - start}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["latency", "ttft", "throughput"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default="")
    parser.add_argument("--keys-file", default="", help="throughput: cycle through these keys")
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--trace", default="", help="latency: write each request's times here")
    args = parser.parse_args(argv)
    work = (
        throughput(args)
        if args.mode == "throughput"
        else sequential(args, stream=args.mode == "ttft")
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(work)
    else:
        result = uvloop.run(work)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
