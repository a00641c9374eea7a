"""The Makefile's targets: what each would run, read with ``make -n -B`` (print every command of
the target and its prerequisites as if all were out of date; nothing is run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _would_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("target", ["run", "serve", "worker", "migrate"])
def test_serving_targets_do_not_need_npm(target: str) -> None:
    """The JavaScript SDKs are test-only: an offline ``make run`` or a production ``make serve``
    must not run ``npm ci``."""
    commands = _would_run(target)

    assert "manage.py" in commands or "celery" in commands or "gunicorn" in commands
    assert "npm" not in commands


def test_make_test_installs_the_javascript_sdks() -> None:
    assert "npm ci" in _would_run("test")
