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

    litellm = ""
    if litellm_python.exists():  # not when LiteLLM was not installed for the run
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
            for q in ("p50", "p90", "p99"):
                # Against the median of the direct runs (gateway.measure_c1, loadgen.added_ms).
                row[f"added_{q}_ms@{key}"] = _get(targets, name, key, "latency", "added_ms", q)
                mine = _get(targets, name, key, "ttft", "latency_ms", q)
                floor = _get(targets, "direct", key, "ttft", "latency_ms", q)
                row[f"ttft_added_{q}_ms@{key}"] = (
                    None if mine is None or floor is None else mine - floor
                )
            row[f"client_p99_ms@{key}"] = _get(targets, name, key, "latency", "latency_ms", "p99")
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
        direct[f"latency_p99_ms@{key}"] = _get(
            targets, "direct", key, "latency", "latency_ms", "p99"
        )
        direct[f"latency_p99_runs_ms@{key}"] = [
            run["p99"] for run in _get(targets, "direct", key, "latency", "runs") or []
        ]
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
        add(f"client latency p99, c=1, upstream {lat} ms (ms)", f"client_p99_ms@{key}",
            floor=direct.get(f"latency_p99_ms@{key}"))  # fmt: skip
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


def settlement_text(results: dict[str, Any]) -> str:
    st = _get(results, "gateway", "settlement")
    if not st:
        return "Settlement check: not run."
    ok = st["succeeded_records_match_ok_responses"] and st["ledger_matches_balance"]
    return (
        f"Settlement check (usage settled from the Redis stream by the dedicated settler process): "
        f"{st['usage_records'].get('succeeded', 0):,} `succeeded` usage records for "
        f"{st['client_ok_responses']:,} 200 responses RouterHub gave the load generator "
        f"(all records: {st['usage_records']}); reservations {st['reservations']}; "
        f"{st['usage_ledger_entries']:,} usage ledger entries summing to {st['usage_ledger_sum']} = "
        f"balance change {st['balance_change']} (records' cost sum {st['usage_records_cost_sum']}); "
        f"stream drained {st['settle_wait_s']} s after the last request. "
        + ("**Consistent.**" if ok else "**MISMATCH — see `gateway.settlement` in results.json.**")
    )


def routing_text(results: dict[str, Any]) -> str:
    """Routing decision latency, ``router/<slug>`` added latency and training throughput."""
    parts = []
    e2e = _get(results, "gateway", "router_e2e")
    if e2e:
        parts.append(
            f"`{e2e['router']}` (trained at setup over demo/small and demo/large) vs `demo/small`, "
            f"same production server, c=1, upstream 0 ms, A-B-B-A runs of "
            f"{_get(results, 'gateway', 'options', 'requests_c1')} requests: p50 "
            f"{_n(e2e['router_p50_ms'])} vs {_n(e2e['plain_p50_ms'])} ms, **added p50 "
            f"{_n(e2e['added_p50_ms'])} ms**, p90 {_n(e2e['added_p90_ms'])} ms, p99 "
            f"{_n(e2e['added_p99_ms'])} ms; errors {e2e['errors']}."
        )
    pipe = _get(results, "gateway", "pipeline_e2e")
    if pipe:
        parts.append(
            f"`{pipe['pipeline']}` (a one-step cascade on demo/small) vs `demo/small`, same "
            f"server and method: p50 {_n(pipe['pipeline_p50_ms'])} vs {_n(pipe['plain_p50_ms'])} "
            f"ms, **added p50 {_n(pipe['added_p50_ms'])} ms**, p90 {_n(pipe['added_p90_ms'])} ms, "
            f"p99 {_n(pipe['added_p99_ms'])} ms; errors {pipe['errors']}."
        )
    routing = results.get("routing") or {}
    if "skipped" in routing or "error" in routing:
        why = routing.get("skipped") or routing.get("error")
        parts.append(f"Routing decision latency and training throughput: not measured ({why}).")
        return "\n\n".join(parts)
    decision = routing.get("decision_latency") or {}
    two, eleven = decision.get("2_candidates") or {}, decision.get("11_candidates") or {}
    rows = ["| prompt | 2 candidates p50 (ms) | p99 | 11 candidates p50 (ms) | p99 |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    for size in ("200B", "2KB", "4KB"):
        a, b = two.get(size) or {}, eleven.get(size) or {}
        rows.append(f"| {size} | {_n(a.get('p50_ms'))} | {_n(a.get('p99_ms'))} "
                    f"| {_n(b.get('p50_ms'))} | {_n(b.get('p99_ms'))} |")  # fmt: skip
    parts.append(
        "Routing decision latency (featurize + score + order in `training.predictor`, one prompt "
        "at a time, in-process; 2 candidates: the 14k-row MMLU router below; 11 candidates: a "
        "RouterBench ARC-Challenge router):\n\n" + "\n".join(rows)
    )
    training = routing.get("training") or {}
    rows = ["| rows | CV folds | training (s) | rows/s | run wall (s) | upload + validation (s) | peak RSS (MB) |",
            "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for n, run in training.items():
        if "error" in run:
            rows.append(f"| {int(n):,} | error: {run['error'][-200:]!r} | | | | | |")
            continue
        rows.append(f"| {run['rows']:,} | {run['folds']} | {_n(run['training_seconds'], 1)} "
                    f"| {run['rows_per_second']:,.0f} | {_n(run['run_wall_seconds'], 1)} "
                    f"| {_n(run['upload_validate_seconds'], 1)} | {run['peak_rss_mb']:,.0f} |")  # fmt: skip
    folds = {run.get("folds") for run in training.values()}
    parts.append(
        "Training a 2-candidate router (routellm_mmlu.csv resampled with replacement to each size, "
        "every prompt given a distinct suffix so de-duplication keeps it; through "
        "`training.services`, eager Celery; one fresh process per size). Training = featurize + "
        "k-fold out-of-fold predictions + final fit; rows/s = rows / training; run wall adds "
        "loading the dataset, evaluation and saving artifacts; peak RSS is the whole process "
        "(upload, validation and training)"
        + (". **The 100k-row run uses fewer CV folds** to keep `make bench` under 15 minutes."
           if len(folds) > 1 else ".")
        + "\n\n" + "\n".join(rows)
    )  # fmt: skip
    return "\n\n".join(parts)


def keys_text(results: dict[str, Any]) -> str:
    """RouterHub's throughput with 100,000 keys in the key table (``bench.gateway_keys``)."""
    keys = _get(results, "gateway", "keys_100k")
    if not keys:
        return ""
    rows = ["| load on | c=16 (req/s) | c=64 (req/s) | errors |", "|---|---:|---:|---:|"]
    for active, label in ((1, "the bench key"), (1_000, "1,000 keys in turn"),
                          (keys["keys_in_table"], f"all {keys['keys_in_table']:,} keys in turn")):  # fmt: skip
        runs = [keys.get(f"active{active}_c{c}") or {} for c in (16, 64)]
        rows.append(f"| {label} | {_n(runs[0].get('rps'), 0)} | {_n(runs[1].get('rps'), 0)} | "
                    f"{sum(r.get('errors', 0) for r in runs)} |")  # fmt: skip
    return (
        f"RouterHub with {keys['keys_in_table']:,} more keys in the key table (COPY into the bench "
        "organization, rpm/tpm limits on), 0 ms upstream, same server, after the table above "
        "(`bench/gateway_keys.py`). Cycling over all of them, every request is a key-cache miss "
        "(a database read) and a new rate-limit lease (a Redis round trip):\n\n" + "\n".join(rows)
    )


def select_text(results: dict[str, Any]) -> str:
    """``POST /api/v1/routers/{slug}/select`` through the lean gateway path and the DRF view."""
    sel = results.get("select") or {}
    if "skipped" in sel or "error" in sel or not sel:
        return f"`select`: not measured ({sel.get('skipped') or sel.get('error') or 'no run'})."
    http, decision, activation = sel["http_c1"], sel["decision"], sel["activation"]["gateway"]

    def pair(d: dict[str, Any]) -> str:
        return f"{_n(d['p50_ms'])} / {_n(d['p99_ms'])}"

    rows = [
        "| `select`, 2 KB prompt, 11 candidates | lean gateway path | DRF view (before) |",
        "|---|---:|---:|",
        f"| over HTTP, c=1, p50 / p99 (ms) | {pair(http['gateway'])} | {pair(http['drf'])} |",
        f"| the decision (`latency_ms`), p50 / p99 (ms) | {pair(decision['gateway'])} "
        f"| {pair(decision['drf'])} |",
    ]
    load = sel.get("loadavg")
    busy = (
        f" Load average during the run: {load:.1f} on {results['machine']['cores']} cores."
        if load
        else ""
    )
    return (
        "`POST /api/v1/routers/{slug}/select` (`python -m bench.select_endpoint`, also run by "
        f"`make bench`): a RouterBench ARC router ({sel['candidates']} candidates), production "
        f"servers with {sel['workers']} workers each: the production app (keyed JSON calls served "
        "by the lean gateway path) and Django alone (every call through the DRF view, as before); "
        f"{http['gateway']['n']} sequential keep-alive requests each, in alternating blocks."
        + busy + "\n\n" + "\n".join(rows) + "\n\n"
        f"While version 2 was activated through the API, {activation['selects']} selects on fresh "
        f"connections: p50 {_n(activation['p50_ms'])} ms, slowest {_n(activation['slowest_ms'])} "
        "ms (no decision waits for the version to load)."
    )  # fmt: skip


def readme_section(results: dict[str, Any]) -> str:
    m, v, g = results["machine"], results["versions"], results["gateway"]
    ll = g["litellm"]
    db = (
        f"**LiteLLM was not measured in this run**: {ll['note']}."
        if not ll.get("ran", True)
        else "LiteLLM ran with its database: a virtual key, spend written to Postgres."
        if ll["database"]
        else "**LiteLLM ran without a database** (master-key auth; it computes spend but does "
        f"not store it), because its database mode could not run offline: {ll['note']}."
    )
    opts = g["options"]
    foreign = results["summary"]["foreign_load_cores"]
    noise = ""
    if foreign["max"] is not None:
        noise = (f"Other work on the machine during the run (not the bench, Postgres or Redis) "
                 f"used {foreign['mean']:.2f} cores on average, {foreign['max']:.2f} at most"
                 + (": the numbers are depressed by that contention." if foreign["mean"] > 0.25
                    else ": the runs it overlapped may be depressed by it." if foreign["max"] > 0.25
                    else "."))  # fmt: skip
    return f"""{START}
Measured {results["date"]} on {m["cores"]} cores ({m["cpu"]}), {m["memory_gb"]} GB{_loads(m)}; Python {v["python"]},
Django {v["django"]}, LiteLLM {v["litellm"]}, RouterHub `{(v["routerhub_git_sha"] or "")[:10]}`.
Reproduce with `make bench` (writes `bench/results.json`; this run took {results["elapsed_s"] / 60:.0f} minutes, plus a few
minutes the first time to install LiteLLM into `bench/.litellm-venv`). Options:
`make bench BENCH_ARGS="--duration 10 --datasets ../shared/datasets --big-folds 3 --no-routing"`. Profile the gateway's hot path under load with
`.venv/bin/python -m bench.profile_gateway [--gil]` (needs `pip install py-spy` into .venv), and
what a lone request waits behind with `.venv/bin/python -m bench.tail_probe` (no py-spy needed).
Where others share the machine, give the run its own database and Redis db:
`BENCH_DATABASE=… BENCH_REDIS_URL=… BENCH_SELECT_DATABASE=… BENCH_SELECT_REDIS_URL=… make bench`.

Setup: the project's fake upstream with a fixed latency (0 ms and 20 ms) called directly (the
floor), through RouterHub in its production configuration (gunicorn, {g["routerhub"]["workers"]} uvicorn
workers, Postgres, Redis; key auth, rpm/tpm limits, credit reservation and settlement, usage
records all on) and through LiteLLM's proxy ({ll["workers"]} workers). Non-streaming
chat completions (`demo/small`, 48 max tokens) from a separate load-generator process over
keep-alive HTTP/1.1 on 127.0.0.1. Latency: {opts["requests_c1"]} sequential requests after
{opts["warmup"]} warm-up; throughput: {opts["duration_s"]:.0f} s per gateway and concurrency
({opts["direct_duration_s"]:.0f} s for the floor); gateways alternate within the run.

"Added" latency at c=1 is the gateway's percentile minus the median of the same percentile over
{_direct_runs(results)} c=1 runs of the direct upstream interleaved with the gateways' runs. One direct run is no
floor for a tail: the p99 of {opts["requests_c1"]} requests is its {_nth(opts["requests_c1"])}, and once one run's read
2.35 ms where the others read 0.52–0.65. The "client latency p99" rows give each gateway's own
p99 as the load generator saw it; their direct column is the median of the direct runs' p99s
({_direct_p99s(results)}). Each added row is a difference of two percentiles, so a higher
percentile can read lower than a lower one when the direct runs' tail is the noisier of the two.
Streaming TTFT is measured against one direct run. CPU is the server's whole
process tree (from /proc) divided by the requests it served; memory is the peak summed RSS of its workers.

{table(results)}

{db}

{noise}

{settlement_text(results)}

{keys_text(results)}

{routing_text(results)}

{select_text(results)}
{END}"""


def _direct_runs(results: dict[str, Any]) -> int:
    return len(_get(results, "summary", "direct", "latency_p99_runs_ms@0ms") or []) or 1


def _nth(requests: int) -> str:
    """Which request, slowest first, the p99 of ``requests`` is (``loadgen.percentile``'s rank)."""
    rank = requests - max(0, round(0.99 * requests + 0.5) - 1)
    if rank == 1:
        return "slowest"
    suffix = (
        "th" if rank % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    )
    return f"{rank}{suffix}-slowest"


def _direct_p99s(results: dict[str, Any]) -> str:
    """The direct runs' p99s at each upstream latency, as the README states them."""
    direct = _get(results, "summary", "direct") or {}
    return "; ".join(
        f"at {key.split('@')[1].replace('ms', ' ms')}: " + ", ".join(_n(v) for v in values)
        for key, values in direct.items() if key.startswith("latency_p99_runs_ms@") and values
    ) or "no runs"  # fmt: skip


def _loads(machine: dict[str, Any]) -> str:
    """The machine's load average (1 min) when the run began and ended: other work shares it."""
    start, end = machine.get("loadavg_at_start"), machine.get("loadavg_at_end")
    if start is None or end is None:
        return ""
    return f", load average {start[0]:.1f} at the start and {end[0]:.1f} at the end"


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
