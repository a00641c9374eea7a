"""Issue 16's seams, checked on the source: the gateway (``routing/gateway/``) reaches billing
only through ``billing.metering`` (one interface for holds, prices and settlement, which pipelines
bill each provider call through), and ``routing`` reaches ``training`` only through
``training.serving`` (routers have one home)."""

from __future__ import annotations

import ast
from pathlib import Path

ROUTING = Path(__file__).resolve().parents[2] / "routing"
GATEWAY = ROUTING / "gateway"


def _imports_of(path: Path, app: str) -> list[str]:
    """Every module of ``app`` that ``path`` imports, at its top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != app else [f"{app}.{a.name}" for a in node.names]
            found += [n for n in names if n.split(".")[0] == app]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == app]
    return found


def _billing_imports(path: Path) -> list[str]:
    return _imports_of(path, "billing")


def test_the_gateway_imports_billing_only_through_metering() -> None:
    modules = sorted(GATEWAY.glob("*.py"))
    assert len(modules) > 10
    outside = {
        path.name: [name for name in _billing_imports(path) if name != "billing.metering"]
        for path in modules
    }
    assert {name: found for name, found in outside.items() if found} == {}


def test_routing_imports_training_only_through_serving() -> None:
    modules = sorted(p for p in ROUTING.rglob("*.py") if "migrations" not in p.parts)
    assert len(modules) > 30
    outside = {
        str(path.relative_to(ROUTING)): [
            name for name in _imports_of(path, "training") if name != "training.serving"
        ]
        for path in modules
    }
    assert {name: found for name, found in outside.items() if found} == {}
