"""``POST /api/v1/routers/{slug}/select``: the lean gateway path beside the DRF view, in one run.

    python -m bench.select_endpoint [--requests 1000] [--workers 2] [--datasets ../shared/datasets]
        [--database routerhub_bench_select] [--redis-url redis://127.0.0.1:6379/14] [--json PATH]

A RouterBench ARC-Challenge router (11 candidates, train split, 3 folds) in a fresh database,
served by two production servers (gunicorn + uvicorn workers) on the same database:
``routerhub.asgi:application`` (keyed JSON calls of select go to the lean gateway app) and
``routerhub.asgi:django_application`` (Django alone: every call reaches the DRF view, as before).
Reported side by side:

- over HTTP at concurrency 1 (keep-alive, a 2 KB prompt): p50/p99 of the whole exchange, in
  blocks alternating between the two servers so both see the same machine;
- the decision itself: the ``latency_ms`` each answer reports (featurize, score, order);
- activation: version 2 (version 1's files stored again, so it loads from storage like any new
  version) is activated through each server while selects on fresh connections run; the slowest
  select until every answer names the new version (each server: one activation).

Numbers are written, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import gateway, report
from bench.loadgen import Conn, percentile
from bench.procs import Proc, free_port, wait_http

SLUG = "arc"
DATABASE = os.environ.get("BENCH_SELECT_DATABASE", "routerhub_bench_select")
REDIS_URL = os.environ.get("BENCH_SELECT_REDIS_URL", "redis://127.0.0.1:6379/14")
PROMPT_BYTES = 2048
DATASETS = gateway.REPO.parent / "shared" / "datasets"  # ../shared/datasets from the repo


# --- setup, in a child process with the servers' settings ---------------------------------------


def _setup(datasets: Path) -> dict[str, Any]:
    """Organization, keys, the ARC router (version 1 active) and version 2 (not active)."""
    import django

    django.setup()
    import pandas as pd
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from accounts.models import KeyScope, User
    from accounts.services import api_key_create, organization_create
    from bench.router import ARC_NON_MODEL, _train, _upload
    from training.models import RouterVersion

    user = User.objects.create_user("select-bench@routerhub.invalid", None)
    organization = organization_create(name="Select bench", owner=user)
    key = api_key_create(organization=organization, name="bench", created_by=user).plaintext
    manage = api_key_create(organization=organization, name="bench-manage", created_by=user,
                            scope=KeyScope.MANAGE).plaintext  # fmt: skip
    train_path = datasets / "routerbench_arc_challenge_train.csv"
    header = pd.read_csv(train_path, nrows=0).columns
    models = [c for c in header if "|" not in c and c not in ARC_NON_MODEL]
    columns = {"prompt": "prompt", "scores": {m: m for m in models},
               "costs": {m: f"{m}|total_cost" for m in models}}  # fmt: skip
    version, _ = _train(organization, SLUG, models, _upload(organization, train_path, columns),
                        {"folds": 3})  # fmt: skip
    prefix = f"{version.artifact_prefix}-copy"
    files = {}
    for name, spec in version.artifact_files.items():
        with default_storage.open(spec["path"], "rb") as handle:
            path = default_storage.save(f"{prefix}/{name}", ContentFile(handle.read()))
        files[name] = {"path": path, "sha256": spec["sha256"]}
    RouterVersion.objects.create(router=version.router, number=2, candidates=version.candidates,
                                 artifact_prefix=prefix, artifact_files=files,
                                 checksum=version.checksum, metrics=version.metrics)  # fmt: skip
    prompts = pd.read_csv(train_path, usecols=["prompt"])["prompt"].astype(str).tolist()
    return {"key": key, "manage_key": manage, "candidates": len(models), "prompts": prompts[:400]}


# --- measuring -----------------------------------------------------------------------------------


def _prompts(pool: list[str], count: int) -> list[str]:
    rng = random.Random(0)
    out = []
    for _ in range(count):
        text = ""
        while len(text) < PROMPT_BYTES:
            text += rng.choice(pool) + "\n"
        out.append(text[:PROMPT_BYTES])
    return out


def _raw_request(url: str, key: str, prompt: str) -> bytes:
    port = url.rsplit(":", 1)[1]
    payload = orjson.dumps({"messages": [{"role": "user", "content": prompt}], "tradeoff": 0.5})
    lines = [f"POST /api/v1/routers/{SLUG}/select HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: application/json", f"Content-Length: {len(payload)}",
             "Accept: */*", f"Authorization: Bearer {key}"]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _http_latencies(url: str, raws: list[bytes], count: int) -> list[float]:
    """``count`` selects one after another on one keep-alive connection (seconds each)."""
    conn = Conn("127.0.0.1", int(url.rsplit(":", 1)[1]))
    samples = []
    try:
        for index in range(count):
            started = time.perf_counter()
            status, _ = await conn.request(raws[index % len(raws)])
            if status != 200:
                raise RuntimeError(f"{url} answered {status}")
            samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    return samples


def _summary(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50) or 0, 3),
            "p99_ms": round(percentile(ms, 99) or 0, 3)}  # fmt: skip


def measure_http(targets: dict[str, str], key: str, prompts: list[str], requests: int,
                 blocks: int = 10) -> dict[str, Any]:  # fmt: skip
    raws = {name: [_raw_request(url, key, p) for p in prompts] for name, url in targets.items()}
    for name, url in targets.items():
        asyncio.run(_http_latencies(url, raws[name], 100))  # warm-up: every router loaded
    samples: dict[str, list[float]] = {name: [] for name in targets}
    for block in range(blocks):
        order = list(targets) if block % 2 == 0 else list(reversed(targets))
        for name in order:
            got = asyncio.run(_http_latencies(targets[name], raws[name], requests // blocks))
            samples[name] += [s * 1000 for s in got]
    return {name: _summary(ms) for name, ms in samples.items()}


def measure_decision(targets: dict[str, str], key: str, prompts: list[str],
                     requests: int) -> dict[str, Any]:  # fmt: skip
    """The ``latency_ms`` the answers report: the decision, without HTTP or parsing."""
    out = {}
    for name, url in targets.items():
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            reported = []
            for index in range(requests):
                body = {"messages": [{"role": "user", "content": prompts[index % len(prompts)]}],
                        "tradeoff": 0.5}  # fmt: skip
                answer = client.post(f"{url}/api/v1/routers/{SLUG}/select", json=body).json()
                reported.append(float(answer["latency_ms"]))
        out[name] = _summary(reported[20:])  # the first 20 are warm-up
    return out


def measure_activation(url: str, key: str, manage_key: str, version: int,
                       prompt: str) -> dict[str, Any]:  # fmt: skip
    """Selects on fresh connections (so every worker answers some) while ``version`` is
    activated, after 30 that loaded the active one everywhere; the slowest until 20 answers in
    a row name the new version (bounded: 20 s)."""
    seen: list[tuple[float, int]] = []
    stop = threading.Event()
    body = {"messages": [{"role": "user", "content": prompt}], "tradeoff": 0.5}

    def run() -> None:
        while not stop.is_set():
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                started = time.perf_counter()
                answer = client.post(f"{url}/api/v1/routers/{SLUG}/select", json=body).json()
                seen.append(((time.perf_counter() - started) * 1000, answer["version"]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while len(seen) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)  # every worker has served (and loaded) the active version
    before = len(seen)
    activated = httpx.post(f"{url}/api/v1/routers/{SLUG}/versions/{version}/activate",
                           headers={"Authorization": f"Bearer {manage_key}"}, timeout=30)  # fmt: skip
    activated.raise_for_status()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tail = [v for _, v in seen[-20:]]
        if len(seen) - before >= 20 and all(v == version for v in tail):
            break
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=30)
    during = seen[before:]
    first_new = next((ms for ms, v in during if v == version), None)
    return {"selects": len(during), "slowest_ms": round(max(ms for ms, _ in during), 2),
            "first_on_new_version_ms": round(first_new, 2) if first_new is not None else None,
            "p50_ms": round(percentile([ms for ms, _ in during], 50) or 0, 2)}  # fmt: skip


# --- the run ---------------------------------------------------------------------------------------


def _server(name: str, app: str, env: dict[str, str], workers: int, out: Path) -> tuple[Proc, str]:
    port = free_port()
    argv = [str(gateway.GUNICORN), app, "-c", "deploy/gunicorn.conf.py", "--workers", str(workers),
            "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    proc = Proc(name, argv, env=env, cwd=gateway.REPO, log_dir=out)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=90, proc=proc)
    return proc, url


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = gateway.REPO / "bench" / "out" / "select"
    out.mkdir(parents=True, exist_ok=True)
    env = gateway.routerhub_env("http://127.0.0.1:9")  # no upstream: select calls none
    env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{args.database}",
               REDIS_URL=args.redis_url, ROUTERHUB_VAR_DIR=str(out / "var"),
               USAGE_SETTLER="worker")  # fmt: skip
    gateway.log(f"select benchmark: database {args.database}, ARC router from {args.datasets}")
    gateway.recreate_database(args.database)
    gateway.run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, out / "setup.log")
    setup = json.loads(
        gateway.run_py(["-m", "bench.select_endpoint", "--child-setup", "--datasets",
                        str(args.datasets)], env | {"CELERY_TASK_ALWAYS_EAGER": "true"},
                       out / "setup.log").splitlines()[-1]
    )  # fmt: skip
    prompts = _prompts(setup["prompts"], 50)
    procs: list[Proc] = []
    try:
        lean, lean_url = _server("select-gateway", "routerhub.asgi:application", env,
                                 args.workers, out)  # fmt: skip
        procs.append(lean)
        drf, drf_url = _server("select-drf", "routerhub.asgi:django_application", env,
                               args.workers, out)  # fmt: skip
        procs.append(drf)
        targets = {"gateway": lean_url, "drf": drf_url}
        gateway.log(f"select benchmark: {args.requests} selects per server over HTTP")
        results: dict[str, Any] = {
            "candidates": setup["candidates"],
            "prompt_bytes": PROMPT_BYTES,
            "workers": args.workers,
            "http_c1": measure_http(targets, setup["key"], prompts, args.requests),
            "decision": measure_decision(targets, setup["key"], prompts, 220),
        }
        results["loadavg"] = os.getloadavg()[0]
        gateway.log("select benchmark: activation while selects run")
        results["activation"] = {
            "gateway": measure_activation(lean_url, setup["key"], setup["manage_key"], 2,
                                          prompts[0]),
            "drf": measure_activation(drf_url, setup["key"], setup["manage_key"], 1, prompts[0]),
        }  # fmt: skip
    finally:
        for proc in procs:
            proc.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="select: lean gateway path vs DRF view.")
    parser.add_argument("--requests", type=int, default=1000, help="timed selects per server")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child-setup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_setup:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")
        print(json.dumps(_setup(args.datasets.resolve())))
        return 0
    if not (args.datasets / "routerbench_arc_challenge_train.csv").exists():
        print(f"routerbench_arc_challenge_train.csv not found in {args.datasets}", file=sys.stderr)
        return 2
    results = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(report.select_text({"select": results, "machine": report.machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
