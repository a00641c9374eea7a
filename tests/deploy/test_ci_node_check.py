"""``.ci/run``'s Node.js check (``.ci/node_check.sh``), run under ``set -euo pipefail`` as CI
runs it, with a PATH holding no node, an old one, an unreadable one or a new one: it always says
what it found and lets CI go on to lint and the tests (it exited 127 silently without node)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "sed")  # what the snippet may use besides node


def _run(tmp_path: Path, node_version: str | None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (bin_dir / tool).symlink_to(found)
    if node_version is not None:
        node = bin_dir / "node"
        node.write_text(f"#!{shutil.which('bash')}\necho '{node_version}'\n")
        node.chmod(0o755)
    script = "set -euo pipefail; source .ci/node_check.sh; node_check; echo 'CI: go on to lint'"
    return subprocess.run(
        [str(bin_dir / "bash"), "-c", script],
        cwd=REPO_ROOT,
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("node_version", "says"),
    [
        (None, "no node on PATH"),
        ("v18.19.1", "node v18.19.1 is too old"),
        ("not a version", "cannot read node's version ('not a version')"),
        ("v22.3.0", "node v22.3.0"),
    ],
)
def test_the_node_check_says_what_it_found_and_ci_goes_on(
    tmp_path: Path, node_version: str | None, says: str
) -> None:
    proc = _run(tmp_path, node_version)

    assert proc.returncode == 0, proc.stderr
    assert says in proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("CI: go on to lint")


def test_ci_run_uses_the_checked_snippet() -> None:
    run = (REPO_ROOT / ".ci" / "run").read_text()
    assert "source .ci/node_check.sh\nnode_check\n" in run and "node --version" not in run
