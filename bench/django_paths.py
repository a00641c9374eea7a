"""Django's paths under the production server (not part of ``make bench``): requests per second,
latency and the PostgreSQL connections the server holds, for the database settings in effect.

    python -m bench.django_paths [--workers 2] [--requests 2000] [--concurrency 16]
        [--database routerhub_djpaths] [--redis-url redis://127.0.0.1:6379/13] [-e NAME=VALUE ...]

Half the requests are ``GET /readyz`` (unauthenticated: a database ``SELECT 1``, Redis, broker),
half ``GET /api/v1/credits`` with a management key (key lookup, organization, balance). Then a
``/v1/chat/completions`` throughput run on the 0 ms fake upstream shows what the gateway's hot
path pays. ``-e DATABASE_POOL_MAX_SIZE=0`` compares one connection per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from typing import Any

import httpx
import psycopg

from bench import gateway
from bench.loadgen import summary_ms
from bench.procs import Proc

APP_NAME = "rh-bench-django-paths"
MANAGE_KEY = (
    "from accounts.models import Organization, KeyScope; from accounts import services; "
    "print(services.api_key_create(organization=Organization.objects.get(), created_by=None, "
    "scope=KeyScope.MANAGE, name='bench').plaintext)"
)


def connections(dbname: str) -> int:
    with psycopg.connect(dbname=dbname, autocommit=True, **gateway.PG) as conn:  # type: ignore[arg-type]
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
        ).fetchone()
    return int(row[0]) if row else 0


async def fire(url: str, key: str, requests: int, concurrency: int) -> dict[str, Any]:
    samples: list[float] = []
    errors = 0
    queue = iter(range(requests))
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            for i in queue:
                started = time.perf_counter()
                if i % 2:
                    response = await client.get(f"{url}/readyz")
                else:
                    response = await client.get(
                        f"{url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"}
                    )
                samples.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rps": round(requests / elapsed, 1),
        "errors": errors,
        "latency_ms": summary_ms(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--database", default="routerhub_djpaths")
    parser.add_argument("--redis-url", default=gateway.REDIS_URL)
    parser.add_argument("-e", dest="env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    out = gateway.REPO / "bench" / "out" / "django_paths"
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    try:
        fake, upstream = gateway.start_fake(0, out)
        procs.append(fake)
        env = gateway.routerhub_env(upstream) | {
            "DATABASE_URL": f"postgres://{gateway.PG['user']}@{gateway.PG['host']}:"
            f"{gateway.PG['port']}/{args.database}?application_name={APP_NAME}",
            "REDIS_URL": args.redis_url,
            "CELERY_BROKER_URL": "memory://",
            **dict(item.split("=", 1) for item in args.env),
        }
        gateway.recreate_database(args.database)
        gateway.run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, out / "setup.log")
        seeded = json.loads(
            gateway.run_py(["-m", "bench.seed", "--seed"], env, out / "setup.log").splitlines()[-1]
        )
        manage_key = gateway.run_py(["manage.py", "shell", "-c", MANAGE_KEY], env,
                                    out / "setup.log").split()[-1]  # fmt: skip
        server, url = gateway.start_routerhub(env, args.workers, out)
        procs.append(server)
        asyncio.run(fire(url, manage_key, 200, args.concurrency))  # warm-up

        peak = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], connections(args.database))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(fire(url, manage_key, args.requests, args.concurrency))
        done.set()
        sampler.join()
        result["connections_peak"] = peak[0]
        result["connections_after"] = connections(args.database)
        result["settings"] = args.env
        target = gateway.Target("routerhub", f"{url}/v1/chat/completions", str(seeded["key"]),
                                {0: "demo/small"}, server.pid)  # fmt: skip
        v1 = gateway.loadgen("throughput", target, 0, "--concurrency", str(args.concurrency),
                             "--duration", str(args.seconds), "--warmup-seconds", "1")  # fmt: skip
        result["v1_chat"] = {k: v1[k] for k in ("rps", "errors", "foreign_cores")}
        result["connections_after_v1"] = connections(args.database)
        print(json.dumps(result))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
