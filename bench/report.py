"""Turn the raw numbers into bench/results.json, a console table and README's benchmark section."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gb": round(mem / 2**30, 1), "cpu": cpu,
            "kernel": platform.release(), "loadavg_at_start": os.getloadavg()}  # fmt: skip


def versions(litellm_python: Path) -> dict[str, Any]:
    import django

    def git(*args: str) -> str:
        run = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return run.stdout.strip()

    litellm = subprocess.run(
        [str(litellm_python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {"python": platform.python_version(), "django": django.get_version(),
            "litellm": litellm or None, "routerhub_git_sha": git("rev-parse", "HEAD"),
            "routerhub_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}  # fmt: skip


# --- derived numbers --------------------------------------------------------------------------


def _get(data: dict[str, Any], *path: Any) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def summarize(gateway: dict[str, Any]) -> dict[str, Any]:
    """Added latency (target minus direct), throughput, CPU and memory per gateway, with ratios."""
    targets = gateway["targets"]
    out: dict[str, Any] = {}
    for name in ("routerhub", "litellm"):
        row: dict[str, Any] = {}
        for lat in gateway["options"]["latencies_ms"]:
            key = f"{lat}ms"
            for kind in ("latency", "ttft"):
                for q in ("p50", "p90", "p99"):
                    mine = _get(targets, name, key, kind, "latency_ms", q)
                    floor = _get(targets, "direct", key, kind, "latency_ms", q)
                    label = "added" if kind == "latency" else "ttft_added"
                    row[f"{label}_{q}_ms@{key}"] = (
                        None if mine is None or floor is None else mine - floor
                    )
            for c in gateway["options"]["concurrencies"]:
                run = _get(targets, name, key, f"c{c}") or {}
                row[f"rps_c{c}@{key}"] = run.get("rps")
                row[f"error_rate_c{c}@{key}"] = run.get("error_rate")
                row[f"cpu_s_per_1k_c{c}@{key}"] = run.get("cpu_s_per_1k")
        row["peak_rss_workers_mb"] = _get(gateway, "memory", name, "peak_rss_workers_mb")
        out[name] = row
    ratios = {}
    for metric, mine in out["routerhub"].items():
        theirs = out["litellm"].get(metric)
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) and theirs:
            ratios[metric] = mine / theirs
    out["ratio_routerhub_over_litellm"] = ratios
    direct = {}
    for lat in gateway["options"]["latencies_ms"]:
        key = f"{lat}ms"
        for kind in ("latency", "ttft"):
            direct[f"{kind}_p50_ms@{key}"] = _get(targets, "direct", key, kind, "latency_ms", "p50")
        for c in gateway["options"]["concurrencies"]:
            direct[f"rps_c{c}@{key}"] = _get(targets, "direct", key, f"c{c}", "rps")
    out["direct"] = direct
    foreign = [run["foreign_cores"] for runs in targets.values() for per_latency in runs.values()
               for run in per_latency.values() if isinstance(run, dict) and "foreign_cores" in run]  # fmt: skip
    out["foreign_load_cores"] = {"mean": sum(foreign) / len(foreign) if foreign else None,
                                 "max": max(foreign, default=None)}  # fmt: skip
    return out


# --- rendering ----------------------------------------------------------------------------------


def _n(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def table(results: dict[str, Any]) -> str:
    s = results["summary"]
    rh, ll, ratio, direct = (
        s["routerhub"],
        s["litellm"],
        s["ratio_routerhub_over_litellm"],
        s["direct"],
    )
    rows = []

    def add(label: str, metric: str, *, floor: Any = None, fmt: Any = _n) -> None:
        r = ratio.get(metric)
        rows.append(f"| {label} | {fmt(floor) if floor is not None else ''} | {fmt(rh.get(metric))} "
                    f"| {fmt(ll.get(metric))} | {'–' if r is None else f'{r:.2f}×'} |")  # fmt: skip

    lats = results["gateway"]["options"]["latencies_ms"]
    concs = results["gateway"]["options"]["concurrencies"]
    for lat in lats:
        key = f"{lat}ms"
        for q in ("p50", "p90", "p99"):
            add(f"added latency {q}, c=1, upstream {lat} ms (ms)", f"added_{q}_ms@{key}",
                floor=direct.get(f"latency_p50_ms@{key}") if q == "p50" else None)  # fmt: skip
    for lat in lats:
        key = f"{lat}ms"
        add(f"streaming TTFT added p50, upstream {lat} ms (ms)", f"ttft_added_p50_ms@{key}",
            floor=direct.get(f"ttft_p50_ms@{key}"))  # fmt: skip
    for lat in lats:
        key = f"{lat}ms"
        for c in concs:
            add(f"requests/s, c={c}, upstream {lat} ms", f"rps_c{c}@{key}",
                floor=direct.get(f"rps_c{c}@{key}"), fmt=lambda v: _n(v, 0))  # fmt: skip
    for lat in lats:
        key = f"{lat}ms"
        for c in concs:
            add(f"error rate, c={c}, upstream {lat} ms", f"error_rate_c{c}@{key}", fmt=_pct)
    for c in concs:
        add(f"CPU s per 1,000 requests, c={c}, upstream 0 ms", f"cpu_s_per_1k_c{c}@0ms")
    add("peak RSS, all workers (MB)", "peak_rss_workers_mb", fmt=lambda v: _n(v, 0))
    head = ("| metric | upstream direct (floor) | RouterHub | LiteLLM | RouterHub / LiteLLM |\n"
            "|---|---:|---:|---:|---:|")  # fmt: skip
    return head + "\n" + "\n".join(rows)


def readme_section(results: dict[str, Any]) -> str:
    m, v, g = results["machine"], results["versions"], results["gateway"]
    ll = g["litellm"]
    db = (
        "LiteLLM ran with its database: a virtual key, spend written to Postgres."
        if ll["database"]
        else "**LiteLLM ran without a database** (master-key auth; it computes spend but does "
        f"not store it), because its database mode could not run offline: {ll['note']}."
    )
    routing = results.get("routing")
    routing_text = (
        "Routing decision latency and training throughput: not measured yet "
        "(`bench.run_all.routing_benchmarks()` is a hook for `bench/router.py`)."
        if routing is None else
        "Routing decision latency and training throughput: see `routing` in `bench/results.json`."
    )  # fmt: skip
    opts = g["options"]
    foreign = results["summary"]["foreign_load_cores"]
    noise = ""
    if foreign["max"] is not None:
        noise = (f"Other work on the machine during the run (not the bench, Postgres or Redis) "
                 f"used {foreign['mean']:.2f} cores on average, {foreign['max']:.2f} at most"
                 + (": the numbers are depressed by that contention." if foreign["max"] > 0.25
                    else "."))  # fmt: skip
    return f"""{START}
Measured {results["date"]} on {m["cores"]} cores ({m["cpu"]}), {m["memory_gb"]} GB; Python {v["python"]},
Django {v["django"]}, LiteLLM {v["litellm"]}, RouterHub `{(v["routerhub_git_sha"] or "")[:10]}`.
Reproduce with `make bench` (writes `bench/results.json`; takes about 10 minutes, plus a few
minutes the first time to install LiteLLM into `bench/.litellm-venv`). Options:
`make bench BENCH_ARGS="--duration 10"`. Profile the gateway's hot path under load with
`.venv/bin/python -m bench.profile_gateway [--gil]` (needs `pip install py-spy` into .venv).

Setup: the project's fake upstream with a fixed latency (0 ms and 20 ms) called directly (the
floor), through RouterHub in its production configuration (gunicorn, {g["routerhub"]["workers"]} uvicorn
workers, Postgres, Redis; key auth, rpm/tpm limits, credit reservation and settlement, usage
records all on) and through LiteLLM's proxy ({ll["workers"]} workers). Non-streaming
chat completions (`demo/small`, 48 max tokens) from a separate load-generator process over
keep-alive HTTP/1.1 on 127.0.0.1. Latency: {opts["requests_c1"]} sequential requests after
{opts["warmup"]} warm-up; throughput: {opts["duration_s"]:.0f} s per gateway and concurrency
({opts["direct_duration_s"]:.0f} s for the floor); gateways alternate within the run. "Added" is
the gateway's percentile minus the direct percentile. CPU is the server's whole process tree
(from /proc) divided by the requests it served; memory is the peak summed RSS of its workers.

{table(results)}

{db}

{noise}

{routing_text}
{END}"""


def write_readme(results: dict[str, Any]) -> None:
    text = README.read_text()
    section = readme_section(results)
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: section, text,
                      flags=re.S)  # fmt: skip
    elif "## Benchmarks" in text:
        text = re.sub(
            r"(## Benchmarks\n)", lambda m: m.group(1) + "\n" + section + "\n", text, count=1
        )
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + section + "\n"
    README.write_text(text)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
