"""``python -m routing.fake_upstream --port 8001 [--latency-ms 0]``: serve the fake provider."""

from __future__ import annotations

import argparse

import uvicorn

from routing.fake_upstream.app import FakeUpstream


def main() -> None:
    parser = argparse.ArgumentParser(description="RouterHub's fake LLM provider (simulated).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency-ms", type=int, default=0, help="fixed delay before each answer")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    app = FakeUpstream(latency_ms=args.latency_ms)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, lifespan="on")


if __name__ == "__main__":
    main()
