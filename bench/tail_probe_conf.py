"""Gunicorn configuration for ``bench.tail_probe``: production's (deploy/gunicorn.conf.py), but the
settler it starts beside the workers is ``python -m bench.tail_probe --settler`` (the same
``usage_settler_run``, its batches recorded), started the same way: in gunicorn's session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
exec(
    compile((_REPO / "deploy" / "gunicorn.conf.py").read_text(), "deploy/gunicorn.conf.py", "exec")
)


def _settler_start() -> subprocess.Popen[bytes]:  # replaces the one defined by the exec above
    return subprocess.Popen([sys.executable, "-m", "bench.tail_probe", "--settler"], cwd=_REPO)
