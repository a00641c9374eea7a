"""The gateway (``routing/gateway/``) reaches billing only through ``billing.metering``: one
interface for holds, prices and settlement (issue 16), which pipelines will bill each provider
call through."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "routing" / "gateway"


def _billing_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = (
                [node.module]
                if node.module != "billing"
                else [f"billing.{a.name}" for a in node.names]
            )
            found += [n for n in names if n.split(".")[0] == "billing"]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "billing"]
    return found


def test_the_gateway_imports_billing_only_through_metering() -> None:
    modules = sorted(GATEWAY.glob("*.py"))
    assert len(modules) > 10
    outside = {
        path.name: [name for name in _billing_imports(path) if name != "billing.metering"]
        for path in modules
    }
    assert {name: found for name, found in outside.items() if found} == {}
