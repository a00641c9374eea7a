"""Run cases of ``tests/js`` (the JavaScript SDKs) with ``node`` against the live gateway.

``make test`` installs the pinned packages with ``npm ci`` (``tests/js/package-lock.json``).
Without node, or without them, the tests skip with the reason; under ``REQUIRE_SERVICES=1``
they fail instead."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import service_missing

JS_DIR = Path(__file__).resolve().parent.parent / "js"
RUN_TIMEOUT_S = 25
MAX_OUTPUT_BYTES = 8 << 20

Step = dict[str, Any]  # {"case": "<module>.<name>", "key": optional, **parameters}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        service_missing("needs Node.js (`node` on PATH) for the JavaScript SDK tests")
    assert node is not None
    manifest = json.loads((JS_DIR / "package.json").read_text())
    missing = [
        name
        for name in manifest["dependencies"]
        if not (JS_DIR / "node_modules" / name / "package.json").exists()
    ]
    if missing:
        service_missing(
            f"tests/js/node_modules lacks {', '.join(missing)}: run `make test`"
            " (or `npm ci` in tests/js)"
        )
    return node


def run_js(gateway: str, key: str, *steps: Step) -> list[Any]:
    """Each step's result. An error a case did not catch fails the test with its shape, and so
    does an answer whose ``x-routerhub-dropped`` header names a field the SDK sent (the header
    names the Anthropic-only fields an answer from another provider ignored)."""
    outcomes = run_js_raw(gateway, key, *steps)
    for step, outcome in zip(steps, outcomes, strict=True):
        assert "ok" in outcome, f"{step} raised {outcome.get('error')}"
        dropped = [(e["path"], e["dropped"]) for e in outcome["exchanges"] if e["dropped"]]
        assert not dropped, f"{step}: RouterHub dropped what the SDK sent: {dropped}"
    return [outcome["ok"] for outcome in outcomes]


def run_js_raw(gateway: str, key: str, *steps: Step) -> list[dict[str, Any]]:
    """Per step ``{"ok": result}`` or ``{"error": {thrown, status, message, type, body}}``,
    and its ``exchanges``: each HTTP request the SDK made (path, JSON body sent, status, the
    headers it met). All steps run in one ``node`` process, one after the other."""
    node = _node()
    stdin = json.dumps({"gateway": gateway, "key": key, "steps": list(steps)})
    done = subprocess.run(  # a fixed script; the arguments go as JSON on stdin
        [node, str(JS_DIR / "run.mjs")],
        input=stdin.encode(),
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        cwd=JS_DIR,
        check=False,
    )
    stderr = done.stderr.decode(errors="replace")[-3000:]
    assert done.returncode == 0, f"node exited {done.returncode}: {stderr}"
    assert len(done.stdout) <= MAX_OUTPUT_BYTES, f"node printed {len(done.stdout)} bytes"
    lines = done.stdout.decode().strip().splitlines()
    assert lines, f"node printed nothing: {stderr}"
    outcomes: list[dict[str, Any]] = json.loads(lines[-1])
    return outcomes
