"""Gateway overhead: fake upstream direct (the floor) vs RouterHub vs LiteLLM, in one run.

Everything listens on 127.0.0.1 on free ports and runs in its own process group:
two fake upstreams (fixed latency 0 ms and 20 ms), RouterHub in its production configuration
(gunicorn + uvicorn workers, Postgres, Redis, key auth, rpm/tpm limits, reserve/settle,
usage records), LiteLLM's proxy with the same worker count, and the load generator.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import gateway_keys, litellm_proxy
from bench.loadgen import added_ms
from bench.procs import (
    ForeignLoad,
    MemorySampler,
    Proc,
    cpu_seconds,
    free_port,
    http,
    wait_http,
)

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
GUNICORN = REPO / ".venv" / "bin" / "gunicorn"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# BENCH_DATABASE / BENCH_REDIS_URL: where two engineers share the machine, each their own (the
# run drops the database and flushes the Redis db).
RH_DB, LITELLM_DB = os.environ.get("BENCH_DATABASE", "routerhub_bench"), "litellm_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
LATENCIES = (0, 20)
CONCURRENCIES = (16, 64, 256)
ROUTER_SLUG = "bench"  # router/bench: trained over demo/small and demo/large at setup
PIPELINE_SLUG = "bench-one-step"  # pipeline/bench-one-step: demo/small as its one step
USAGE_STREAM = "rh:usage-stream"  # billing.outbox.STREAM
# c=1 runs of the direct upstream, interleaved with the gateways': the floor of an added
# percentile is their median (one run's p99 can read 4x the others').
DIRECT_RUNS = 3


@dataclass
class Options:
    duration: float = 30.0
    direct_duration: float = 10.0
    requests: int = 500
    stream_requests: int = 200
    warmup: int = 50
    workers: int = os.cpu_count() or 2
    litellm: bool = True
    out: Path = REPO / "bench" / "out"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- setup -------------------------------------------------------------------------------------


def routerhub_env(upstream: str) -> dict[str, str]:
    """Production settings with generated secrets; nothing inherited that could point elsewhere."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "TMPDIR",
        "OPENBLAS_CORETYPE",
        "OPENBLAS_L2_SIZE",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        ROUTERHUB_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        API_KEY_PEPPER=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=f"postgres://{PG['user']}@{PG['host']}:{PG['port']}/{RH_DB}",
        REDIS_URL=REDIS_URL,
        BILLING_ENABLED="false",
        PROVIDER_KEYS_ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DEMO_UPSTREAM_URL=upstream,
        ROUTERHUB_VAR_DIR=str(REPO / "bench" / "out" / "var"),
        PYTHONUNBUFFERED="1",
    )
    return env


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis() -> None:
    from routerhub.redis_clients import redis_client

    redis_client(REDIS_URL).flushdb()


def run_py(args: list[str], env: dict[str, str], log_path: Path) -> str:
    result = subprocess.run(
        [str(PY), *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    with log_path.open("a") as handle:
        handle.write(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return result.stdout


def setup_routerhub_db(env: dict[str, str], out: Path) -> tuple[str, dict[str, Any]]:
    """Drop/create the database, migrate, seed, train ``router/bench``; return the inference
    key and what the router's training reported."""
    recreate_database(RH_DB)
    flush_redis()
    run_py(["manage.py", "migrate", "--noinput", "-v", "0"], env, out / "setup.log")
    seeded = json.loads(
        run_py(["-m", "bench.seed", "--seed"], env, out / "setup.log").splitlines()[-1]
    )
    # Training runs inline (eager Celery) in this one process; the server only serves it.
    trained = json.loads(
        run_py(["-m", "bench.seed", "--router", ROUTER_SLUG],
               env | {"CELERY_TASK_ALWAYS_EAGER": "true"}, out / "setup.log").splitlines()[-1]
    )  # fmt: skip
    run_py(["-m", "bench.seed", "--pipeline", PIPELINE_SLUG], env, out / "setup.log")
    return str(seeded["key"]), trained


def wait_settled(timeout: float = 60.0) -> float:
    """Wait (bounded) until the usage stream is empty: every draft settled and deleted."""
    from routerhub.redis_clients import redis_client

    client = redis_client(REDIS_URL)
    started = time.monotonic()
    time.sleep(0.5)
    while time.monotonic() - started < timeout:
        if client.xlen(USAGE_STREAM) == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(
        f"usage stream still has {client.xlen(USAGE_STREAM)} drafts after {timeout} s"
    )


def verify_settlement(env: dict[str, str], out: Path, served_ok: int) -> dict[str, Any]:
    """Usage records written by the stream settler vs the 200s the clients received, and the
    ledger vs the balance."""
    waited = wait_settled()
    found = json.loads(
        run_py(["-m", "bench.seed", "--verify"], env, out / "setup.log").splitlines()[-1]
    )
    found["client_ok_responses"] = served_ok
    found["settle_wait_s"] = round(waited, 2)
    succeeded = found["usage_records"].get("succeeded", 0)
    found["succeeded_records_match_ok_responses"] = succeeded == served_ok
    return dict(found)


# --- targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL
    key: str
    models: dict[int, str]  # latency -> model name
    cpu_root: int  # whose process tree's CPU counts
    sampler: MemorySampler | None = None
    results: dict[str, Any] = field(default_factory=dict)
    ok_responses: int = 0  # every 200 it answered, warm-ups and probes included


def start_fake(latency: int, out: Path) -> tuple[Proc, str]:
    port = free_port()
    argv = [
        str(PY),
        "-m",
        "routing.fake_upstream",
        "--port",
        str(port),
        "--latency-ms",
        str(latency),
    ]
    proc = Proc(f"fake-upstream-{latency}ms", argv, env=dict(os.environ), cwd=REPO, log_dir=out)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=30, proc=proc)
    return proc, url


def start_routerhub(env: dict[str, str], workers: int, out: Path,
                    app: str = "routerhub.asgi:application",
                    config: str = "deploy/gunicorn.conf.py") -> tuple[Proc, str]:  # fmt: skip
    port = free_port()
    argv = [str(GUNICORN), app, "-c", config,
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    proc = Proc("routerhub", argv, env=env, cwd=REPO, log_dir=out)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", timeout=90, proc=proc)
    return proc, url


def routerhub_alone(workers: int, out: Path, procs: list[Proc],
                    app: str = "routerhub.asgi:application",
                    config: str = "deploy/gunicorn.conf.py") -> tuple[Target, Target]:  # fmt: skip
    """The 0 ms fake upstream and RouterHub's production server on a fresh database, answering;
    returns (RouterHub, the upstream direct) as targets. Started processes go into ``procs``."""
    fake, upstream = start_fake(0, out)
    procs.append(fake)
    env = routerhub_env(upstream)
    key, _ = setup_routerhub_db(env, out)
    rh, url = start_routerhub(env, workers, out, app, config)
    procs.append(rh)
    chat_probe(f"{url}/v1/chat/completions", key, "demo/small", rh)
    routerhub = Target("routerhub", f"{url}/v1/chat/completions", key, {0: "demo/small"}, rh.pid)
    direct = Target("direct", f"{upstream}/v1/chat/completions", "", {0: "demo/small"}, fake.pid)
    return routerhub, direct


def chat_probe(url: str, key: str, model: str, proc: Proc | None, timeout: float = 60) -> None:
    """One request answered 200 (retried until it is, bounded)."""
    body = json.dumps({"model": model, "max_tokens": 8,
                       "messages": [{"role": "user", "content": "ping"}]}).encode()  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    wait_http(url, timeout=timeout, proc=proc, method="POST", body=body, headers=headers)


def repoint_routerhub(env: dict[str, str], upstream: str, out: Path) -> None:
    run_py(["-m", "bench.seed", "--repoint", upstream], env, out / "setup.log")


def upstream_count(upstream: str) -> int:
    _, body = http(f"{upstream}/_requests")
    return len(json.loads(body)["requests"])


def clear_upstream(upstream: str) -> None:
    """The fake keeps a record of every request; clear it so its memory stays bounded."""
    http(f"{upstream}/_requests", method="DELETE", timeout=30)


# --- measuring ----------------------------------------------------------------------------------


def loadgen(mode: str, target: Target, latency: int, *extra: str,
            model: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One load-generator run; ``foreign_cores`` says how busy the rest of the machine was."""
    foreign = ForeignLoad()
    argv = [str(PY), "-m", "bench.loadgen", mode, "--url", target.url, "--key", target.key,
            "--model", model or target.models[latency], *extra]  # fmt: skip
    result = subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"load generator failed: {result.stderr[-2000:]}")
    res = dict(json.loads(result.stdout.splitlines()[-1]))
    res["foreign_cores"] = round(foreign.cores(), 2)
    target.ok_responses += int(res.get("total_ok_including_warmup", 0))
    return res


def latency_run(target: Target, latency: int, *extra: str) -> tuple[dict[str, Any], list[float]]:
    """One c=1 load-generator run: its result and each timed request's latency (ms)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as trace:
        res = loadgen("latency", target, latency, *extra, "--trace", trace.name)
        took = [seconds * 1000 for _, seconds in json.loads(Path(trace.name).read_text())]
    return res, took


def c1_order(targets: list[Target], flip: bool) -> list[Target]:
    """The direct upstream first and after each gateway, ``DIRECT_RUNS`` times at least."""
    direct, *gateways = _order(targets, flip)
    order = [direct]
    for gateway in gateways:
        order += [gateway, direct]
    return order + [direct] * (DIRECT_RUNS - order.count(direct))


def measure_c1(targets: list[Target], latency: int, opts: Options, upstream: str,
               flip: bool = False) -> None:  # fmt: skip
    """c=1 latency of each target (``targets[0]`` the direct upstream, run ``DIRECT_RUNS`` times
    between the gateways' runs); each gateway's result gets ``added_ms`` against the median of
    the direct runs (``loadgen.added_ms``), the direct upstream's the median of its runs."""
    args = ["--requests", str(opts.requests), "--warmup", str(opts.warmup), "--max-seconds", "60"]
    runs: dict[str, list[tuple[dict[str, Any], list[float]]]] = {t.name: [] for t in targets}
    for target in c1_order(targets, flip):
        res, took = latency_run(target, latency, *args)
        runs[target.name].append((res, took))
        clear_upstream(upstream)
        _log_run(latency, "latency", target.name, res)
    direct = [took for _, took in runs["direct"]]
    for target in targets:
        if target.name == "direct":
            result = _median_run([res for res, _ in runs["direct"]])
        else:
            result, took = runs[target.name][0]  # one run of each gateway
            result["added_ms"] = {f"p{q}": added_ms(took, direct, q) for q in (50, 90, 99)}
        target.results.setdefault(f"{latency}ms", {})["latency"] = result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The direct upstream's c=1 runs as one result: each percentile the median of the runs'."""
    quantiles = {}
    for q in ("p50", "p90", "p99", "mean"):
        values = [r["latency_ms"][q] for r in runs if r["latency_ms"][q] is not None]
        quantiles[q] = statistics.median(values) if values else None
    return {"mode": "latency", "latency_ms": quantiles, "runs": [r["latency_ms"] for r in runs],
            "errors": sum(r["errors"] for r in runs),
            "foreign_cores": max(r["foreign_cores"] for r in runs)}  # fmt: skip


def _log_run(latency: int, kind: str, name: str, res: dict[str, Any]) -> None:
    lat = res["latency_ms"]
    log(f"{latency:>2} ms upstream  {kind:<8} {name:<9} p50 {_f(lat['p50'])} "
        f"p90 {_f(lat['p90'])} p99 {_f(lat['p99'])} ms  errors {res['errors']}  "
        f"[other load {res['foreign_cores']:.2f} cores]")  # fmt: skip


def measure(targets: list[Target], upstreams: dict[int, str], opts: Options,
            repoint: Any) -> None:  # fmt: skip
    """For each upstream latency: c=1 latency (``measure_c1``), streaming TTFT, then throughput
    at each concurrency, alternating the order of the gateways between measurements."""
    flip = False
    for latency in LATENCIES:
        repoint(latency)
        key = f"{latency}ms"
        measure_c1(targets, latency, opts, upstreams[latency], flip)
        flip = not flip
        for target in _order(targets, flip):
            res = loadgen("ttft", target, latency, "--requests", str(opts.stream_requests),
                          "--warmup", "10", "--max-seconds", "40")  # fmt: skip
            target.results.setdefault(key, {})["ttft"] = res
            clear_upstream(upstreams[latency])
            _log_run(latency, "ttft", target.name, res)
        flip = not flip
        for concurrency in CONCURRENCIES:
            order = _order(targets, flip)
            flip = not flip
            for target in order:
                duration = opts.direct_duration if target.name == "direct" else opts.duration
                before = cpu_seconds(target.cpu_root)
                # Long enough a warm-up that every connection is in its closed loop when counting
                # starts (at c=256 a request can take a quarter of a second).
                res = loadgen("throughput", target, latency, "--concurrency", str(concurrency),
                              "--duration", str(duration), "--timeout", "30",
                              "--warmup-seconds", str(max(2.0, concurrency / 64)))  # fmt: skip
                cpu = cpu_seconds(target.cpu_root) - before
                served = res["total_ok_including_warmup"] + res["errors"]
                res["cpu_s"] = cpu
                res["cpu_s_per_1k"] = cpu / served * 1000 if served else None
                target.results.setdefault(key, {})[f"c{concurrency}"] = res
                clear_upstream(upstreams[latency])
                log(f"{latency:>2} ms upstream  c={concurrency:<3}    {target.name:<9} "
                    f"{res['rps']:>7.0f} req/s  errors {res['errors']} "
                    f"({(res['error_rate'] or 0) * 100:.2f}%)  CPU {_f(res['cpu_s_per_1k'], 2)} s/1k  "
                    f"[other load {res['foreign_cores']:.2f} cores]")  # fmt: skip
                time.sleep(1)


def measure_router(rh: Target, opts: Options, repoint: Any) -> dict[str, Any]:
    """``router/<slug>`` vs ``demo/small`` at c=1 against the 0 ms upstream, in A-B-B-A order.
    The router picks demo/small or demo/large per prompt; both are served by the same fake."""
    return measure_added(rh, opts, repoint, f"router/{ROUTER_SLUG}", "router")


def measure_pipeline(rh: Target, opts: Options, repoint: Any) -> dict[str, Any]:
    """``pipeline/<slug>`` (demo/small as its one step) vs ``demo/small``, as ``measure_router``:
    what planning the steps, the per-step record and the ``pipeline`` object add."""
    return measure_added(rh, opts, repoint, f"pipeline/{PIPELINE_SLUG}", "pipeline")


def measure_added(rh: Target, opts: Options, repoint: Any, model: str, name: str) -> dict[str, Any]:
    """``model`` vs ``demo/small`` at c=1 against the 0 ms upstream, in A-B-B-A order."""
    repoint(0)
    args = ["--requests", str(opts.requests), "--warmup", str(opts.warmup), "--max-seconds", "60"]
    runs: dict[str, list[dict[str, Any]]] = {"demo/small": [], model: []}
    for label in ("demo/small", model, model, "demo/small"):
        res = loadgen("latency", rh, 0, *args, model=label)
        runs[label].append(res)
        lat = res["latency_ms"]
        log(f" 0 ms upstream  latency  {label:<12} p50 {_f(lat['p50'])} p90 {_f(lat['p90'])} "
            f"p99 {_f(lat['p99'])} ms  errors {res['errors']}  [other load {res['foreign_cores']:.2f} cores]")  # fmt: skip

    def mean(label: str, q: str) -> float | None:
        values = [r["latency_ms"][q] for r in runs[label] if r["latency_ms"][q] is not None]
        return sum(values) / len(values) if values else None

    out: dict[str, Any] = {name: model, "runs": runs}
    for q in ("p50", "p90", "p99"):
        mine, plain = mean(model, q), mean("demo/small", q)
        out[f"{name}_{q}_ms"], out[f"plain_{q}_ms"] = mine, plain
        out[f"added_{q}_ms"] = None if mine is None or plain is None else mine - plain
    out["errors"] = sum(r["errors"] for rs in runs.values() for r in rs)
    return out


def _order(targets: list[Target], flip: bool) -> list[Target]:
    direct = [t for t in targets if t.name == "direct"]
    gateways = [t for t in targets if t.name != "direct"]
    return direct + (gateways[::-1] if flip else gateways)


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --- the whole gateway benchmark ---------------------------------------------------------------


def start_litellm(opts: Options, fakes: dict[int, str],
                  procs: list[Proc]) -> tuple[litellm_proxy.LiteLLM | None, str]:  # fmt: skip
    """LiteLLM's proxy beside RouterHub, or (None, why) when it is off or cannot start (the
    RouterHub numbers are still measured)."""
    if not opts.litellm:
        return None, "not run (--no-litellm)"
    try:
        litellm_proxy.ensure_venv(opts.out / "litellm-install.log")
        db_ok, db_note = litellm_proxy.prisma_status()
        db_url = None
        if db_ok:
            recreate_database(LITELLM_DB)
            db_url = f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{LITELLM_DB}"
        ll = litellm_proxy.start(out=opts.out, upstreams=fakes, workers=opts.workers,
                                 database_url=db_url, database_note=db_note)  # fmt: skip
    except Exception as exc:
        why = f"LiteLLM's proxy could not start: {str(exc).strip().splitlines()[-1][:300]}"
        log(why)
        return None, why
    procs.append(ll.proc)
    log(f"LiteLLM {litellm_proxy.version()} ({opts.workers} workers, "
        f"{'database' if ll.database else 'NO database'}) on {ll.url}")  # fmt: skip
    return ll, ""


def gateway_benchmarks(opts: Options) -> dict[str, Any]:
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    samplers: list[MemorySampler] = []
    try:
        fakes: dict[int, str] = {}
        fake_pids: dict[int, int] = {}
        for latency in LATENCIES:
            proc, url = start_fake(latency, out)
            procs.append(proc)
            fakes[latency], fake_pids[latency] = url, proc.pid
        log(f"fake upstreams: {fakes}")

        env = routerhub_env(fakes[LATENCIES[0]])
        log(f"database {RH_DB}: drop, create, migrate, seed")
        key, router_training = setup_routerhub_db(env, out)
        log(f"router/{ROUTER_SLUG} trained: {router_training}")
        rh_proc, rh_url = start_routerhub(env, opts.workers, out)
        procs.append(rh_proc)
        log(f"RouterHub (gunicorn, {opts.workers} uvicorn workers, production) on {rh_url}")

        ll, ll_note = start_litellm(opts, fakes, procs)
        models_rh = dict.fromkeys(LATENCIES, "demo/small")
        direct = Target("direct", "", "", dict.fromkeys(LATENCIES, "demo-small"), 0)
        rh = Target("routerhub", f"{rh_url}/v1/chat/completions", key, models_rh, rh_proc.pid)
        gateways = [rh]
        if ll is not None:
            gateways.append(Target("litellm", f"{ll.url}/v1/chat/completions", ll.key, ll.models,
                                   ll.proc.pid))  # fmt: skip
        for target in gateways:
            target.sampler = MemorySampler(target.cpu_root).start()
            samplers.append(target.sampler)
        memory_idle: dict[str, int] = {}

        def repoint(latency: int) -> None:
            upstream = fakes[latency]
            direct.url = f"{upstream}/v1/chat/completions"
            direct.cpu_root = fake_pids[latency]
            repoint_routerhub(env, upstream, out)
            time.sleep(2.5)  # CATALOG_CACHE_TTL is 1 s
            chat_probe(rh.url, rh.key, "demo/small", rh_proc)
            rh.ok_responses += 1
            if ll is not None:
                chat_probe(gateways[1].url, ll.key, ll.models[latency], ll.proc)
            if upstream_count(upstream) < len(gateways):
                raise RuntimeError(f"gateways are not calling {upstream} after the repoint")
            clear_upstream(upstream)
            if not memory_idle:
                for target in gateways:
                    assert target.sampler is not None
                    target.sampler.sample()
                    memory_idle[target.name] = target.sampler.results()["peak_workers"]

        measure([direct, *gateways], fakes, opts, repoint)
        peaks = {t.name: t.sampler.stop() for t in gateways if t.sampler is not None}
        router_e2e = measure_router(rh, opts, repoint)
        many_keys = gateway_keys.measure_keys(rh, env, opts, repoint, fakes[0])
        router_e2e["training"] = router_training
        pipeline_e2e = measure_pipeline(rh, opts, repoint)
        settlement = verify_settlement(env, out, rh.ok_responses)
        log(f"settlement: {settlement['usage_records']} usage records for "
            f"{settlement['client_ok_responses']} 200 responses; ledger usage sum "
            f"{settlement['usage_ledger_sum']}, balance change {settlement['balance_change']}, "
            f"reservations {settlement['reservations']}")  # fmt: skip
        return {
            "router_e2e": router_e2e,
            "pipeline_e2e": pipeline_e2e,
            "keys_100k": many_keys,
            "settlement": settlement,
            "targets": {t.name: t.results for t in (direct, *gateways)},
            "memory": {
                t.name: {
                    "peak_rss_workers_mb": peaks[t.name]["peak_workers"] / 2**20,
                    "peak_rss_tree_mb": peaks[t.name]["peak_total"] / 2**20,
                    "idle_rss_workers_mb": memory_idle.get(t.name, 0) / 2**20,
                }
                for t in gateways
            },
            "litellm": {
                "database": ll.database if ll else False,
                "note": ll.database_note if ll else ll_note,
                "ran": ll is not None,
                "version": litellm_proxy.version(),
                "workers": opts.workers,
            },
            "routerhub": {
                "workers": opts.workers,
                "server": "gunicorn + uvicorn workers",
                "env": "production",
                "database": "postgres",
                "redis": True,
                "key": {"rpm": 1_000_000_000, "tpm": 2_000_000_000},
            },
            "options": {
                "duration_s": opts.duration,
                "direct_duration_s": opts.direct_duration,
                "requests_c1": opts.requests,
                "stream_requests": opts.stream_requests,
                "warmup": opts.warmup,
                "latencies_ms": list(LATENCIES),
                "concurrencies": list(CONCURRENCIES),
            },
        }
    finally:
        for sampler in samplers:
            sampler.stop()
        for proc in reversed(procs):
            proc.stop()
        log("all servers stopped")


if __name__ == "__main__":
    sys.exit("run `python -m bench.run_all`")
