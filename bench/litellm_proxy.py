"""LiteLLM's proxy as the comparison: its own virtualenv, a config on the same fake upstreams.

The virtualenv (bench/.litellm-venv, gitignored) is created on first use. LiteLLM's database
mode needs Prisma Client Python and Prisma's query/schema engines, which Prisma downloads from
its own server (not a package registry) at first use: on a machine that reaches only the package registries that
fails, and the proxy then runs without a database (master key only, no spend writes).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, free_port, http, wait_http

VERSION = "1.106.12"
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".litellm-venv"
# What the fake upstream's demo-small costs in RouterHub's catalog (USD per token), so both
# gateways compute the same spend.
INPUT_COST, OUTPUT_COST = 0.10 / 1e6, 0.40 / 1e6


PROJECT_PYTHON = ROOT.parent / ".venv" / "bin" / "python"


@functools.cache
def installed_version(python: Path) -> str | None:
    """The version of litellm whose proxy ``python`` can run (its FastAPI too); None: none."""
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import fastapi, importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return probe.stdout.strip() if probe.returncode == 0 else None


def venv_python() -> Path:
    """The project's .venv when litellm[proxy] is installed there (nothing to download; the
    version is whatever it holds), else bench/.litellm-venv."""
    if installed_version(PROJECT_PYTHON):
        return PROJECT_PYTHON
    return VENV / "bin" / "python"


def version() -> str:
    return installed_version(venv_python()) or VERSION


def ensure_venv(log: Path) -> None:
    """Create bench/.litellm-venv with litellm[proxy]==VERSION unless litellm is installed in
    the project's .venv or that venv is already there."""
    python = venv_python()
    if python == PROJECT_PYTHON:
        return
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0 and probe.stdout.strip() == VERSION:
            return
    print(f"[bench] installing litellm[proxy]=={VERSION} into {VENV} (takes a few minutes)",
          flush=True)  # fmt: skip
    base = "python3.11" if _which("python3.11") else sys.executable
    with log.open("ab") as out:
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={VERSION}"],
            check=True, stdout=out, stderr=out,
        )  # fmt: skip


def _which(name: str) -> bool:
    return any((Path(p) / name).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


def prisma_status(timeout: float = 90) -> tuple[bool, str]:
    """Can LiteLLM's database mode work here? (Prisma client + engines obtainable offline.)"""
    python = venv_python()
    probe = subprocess.run(
        [str(python), "-c", "import prisma"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return False, (
            f"Prisma Client Python is not installed with litellm[proxy]=={version()} (it is in the "
            "'extra-proxy' extra), and installing it does not help offline: `prisma version` "
            "downloads Prisma's query/schema engines from Prisma's own server, which this "
            "machine cannot reach"
        )
    try:
        run = subprocess.run(
            [str(python.parent / "prisma"), "version"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`prisma version` failed: {exc}"
    if run.returncode != 0:
        last = (run.stderr or run.stdout).strip().splitlines()[-1:] or [""]
        return False, f"`prisma version` failed (engines not obtainable offline): {last[0][:200]}"
    return True, "prisma engines available"


@dataclass
class LiteLLM:
    proc: Proc
    url: str
    key: str
    database: bool
    database_note: str
    models: dict[int, str] = field(default_factory=dict)  # latency_ms -> model name


def write_config(path: Path, upstreams: dict[int, str], master_key: str) -> dict[int, str]:
    models, names = [], {}
    for latency, url in upstreams.items():
        name = f"demo-small-{latency}ms"
        names[latency] = name
        models.append({
            "model_name": name,
            "litellm_params": {"model": "openai/demo-small", "api_base": f"{url}/v1",
                               "api_key": "sk-bench-fake-upstream"},
            "model_info": {"input_cost_per_token": INPUT_COST,
                           "output_cost_per_token": OUTPUT_COST},
        })  # fmt: skip
    config = {
        "model_list": models,
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return names


def _env(database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price map from GitHub
        LITELLM_MODE="PRODUCTION",  # no .env loading
        LITELLM_LOG="ERROR",
        TELEMETRY="False",
        NO_DOCS="True",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
        env["STORE_MODEL_IN_DB"] = "False"
    return env


def start(*, out: Path, upstreams: dict[int, str], workers: int, database_url: str | None,
          database_note: str) -> LiteLLM:  # fmt: skip
    """Start the proxy (DB mode when ``database_url``); fall back to no-DB mode on failure."""
    master = "sk-bench-master-" + secrets.token_hex(8)
    config = out / "litellm_config.yaml"
    names = write_config(config, upstreams, master)
    modes = [database_url, None] if database_url else [None]
    last_error = database_note
    for db in modes:
        port = free_port()
        argv = [str(venv_python().parent / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--num_workers", str(workers)]  # fmt: skip
        proc = Proc("litellm" + ("-db" if db else ""), argv, env=_env(db), cwd=out, log_dir=out)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/health/liveliness", timeout=240 if db else 120, proc=proc)
            key, note = master, last_error
            if db:
                status, body = http(
                    f"{url}/key/generate", method="POST",
                    body=json.dumps({"models": list(names.values()), "max_budget": 1e6}).encode(),
                    headers={"Authorization": f"Bearer {master}", "Content-Type": "application/json"},
                )  # fmt: skip
                if status != 200:
                    raise RuntimeError(f"/key/generate answered {status}: {body[:300]!r}")
                key, note = json.loads(body)["key"], "database-backed virtual key (spend tracked)"
            return LiteLLM(proc, url, key, bool(db), note, names)
        except Exception as exc:
            proc.stop()
            if db is None:
                raise
            last_error = f"database mode failed to start: {str(exc)[:300]}"
            print(f"[bench] LiteLLM {last_error}; falling back to no-DB mode", flush=True)
    raise RuntimeError("unreachable")
