"""What the dashboard draws for a pipeline version: boxes (one per step) and the labels of the
arrows between them. A cascade and a series are chains (a cascade's arrows say when it moves on,
a series' carry the output into the next template); a parallel pipeline fans out to its
branches and back into one answer; any other kind is drawn as a plain list of its steps. Fields
this module does not know are listed as they are, so a new gate or step option still shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_SHOWN = {"model", "gate", "pre_gate", "template"}
_TEMPLATE_CHARS = 160


@dataclass
class Box:
    title: str
    lines: list[str] = field(default_factory=list)
    arrow: str = ""  # label of the arrow leaving this box towards the next one


@dataclass
class Diagram:
    layout: str  # "chain", "fan" or "list"
    boxes: list[Box]
    combine: str = ""  # a fan's last box: how the branches' answers become one


def pipeline_diagram(kind: str, steps: list[dict[str, Any]]) -> Diagram:
    boxes = [_box(kind, step, i) for i, step in enumerate(steps)]
    if kind == "cascade":
        for box in boxes[:-1]:
            box.arrow = "gate fails or step skipped"
        return Diagram("chain", boxes)
    if kind == "series":
        for box in boxes[:-1]:
            box.arrow = "answer as {previous}"
        return Diagram("chain", boxes)
    if kind == "parallel":
        return Diagram("fan", boxes, combine="combine the branches' answers")
    return Diagram("list", boxes)


def _box(kind: str, step: dict[str, Any], index: int) -> Box:
    box = Box(title=f"{index + 1}. {step.get('model', '?')}")
    if step.get("pre_gate"):
        box.lines.append(pre_gate_text(step["pre_gate"]))
    if step.get("gate"):
        box.lines.append(f"passes if {gate_text(step['gate'])}")
    if step.get("template"):
        template = str(step["template"])
        cut = template if len(template) <= _TEMPLATE_CHARS else template[:_TEMPLATE_CHARS] + "…"
        box.lines.append(f"prompt: {cut}")
    elif kind == "series" and index > 0:
        box.lines.append("prompt: {previous}")
    box.lines += [f"{key}: {_short(value)}" for key, value in step.items() if key not in _SHOWN]
    return box


def pre_gate_text(gate: dict[str, Any]) -> str:
    if gate.get("type") == "router_score":
        return f"called if router/{gate.get('router')} predicts ≥ {gate.get('min_score')}"
    return f"called if {_short(gate)}"


def gate_text(gate: dict[str, Any]) -> str:
    kind = gate.get("type")
    if kind == "non_empty":
        return "the answer is not empty"
    if kind == "regex":
        return f"the answer matches /{gate.get('pattern')}/"
    if kind == "json":
        return "the answer is JSON"
    if kind == "json_schema":
        return "the answer is JSON matching its schema"
    return _short(gate)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _TEMPLATE_CHARS else text[:_TEMPLATE_CHARS] + "…"
