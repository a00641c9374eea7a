"""What the fake models say: deterministic text, tool calls and JSON, and token counts."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

_TOKEN = re.compile(r"\w+|[^\w\s]")
_ARITHMETIC = re.compile(r"(-?\d+)\s*([+\-*x×/])\s*(-?\d+)")
_SMALL = ("small", "nano", "mini", "lite", "haiku", "8b", "20b", "flash")
_LARGE = ("large", "opus", "pro", "sonnet", "70b", "120b", "gpt-4o", "gpt-5", "gpt-4.1")
_SENTENCES = (
    "The short version is that it depends on the details you care about most.",
    "A careful answer starts by separating what is known from what is assumed.",
    "Breaking the question into smaller parts makes each part easier to check.",
    "Concrete examples make the trade-offs visible.",
    "It is worth verifying the result against an independent source.",
    "Edge cases are where simple answers usually go wrong.",
    "The common approach works well for typical inputs.",
    "Measuring before and after a change shows whether it helped.",
    "Simpler explanations are easier to test and to remember.",
    "A second look at the assumptions often changes the conclusion.",
)
# Correct-answer rate per size on arithmetic prompts: the demo's quality difference.
_ACCURACY = {"small": 0.55, "medium": 0.8, "large": 1.0}
_LENGTH = {"small": 1, "medium": 3, "large": 6}


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def split_tokens(text: str) -> list[str]:
    """Text as stream pieces that concatenate back to it exactly."""
    pieces = re.findall(r"\s*\S+|\s+$", text)  # trailing whitespace is a piece of its own
    return pieces or [text]


def model_size(model: str) -> str:
    name = model.lower()
    if any(word in name for word in _SMALL):
        return "small"
    if any(word in name for word in _LARGE):
        return "large"
    return "medium"


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _arithmetic(prompt: str, size: str, seed: int) -> str | None:
    match = _ARITHMETIC.search(prompt)
    if match is None:
        return None
    left, op, right = int(match[1]), match[2], int(match[3])
    if op == "/" and right == 0:
        return "Division by zero is undefined."
    exact = {
        "+": left + right,
        "-": left - right,
        "*": left * right,
        "x": left * right,
        "×": left * right,
        "/": left / right if op == "/" and right else 0,
    }[op]
    value = round(exact, 4) if isinstance(exact, float) else exact
    correct = (seed % 1000) / 1000 < _ACCURACY[size]
    result = value if correct else value + 1 + seed % 9
    if size == "small":
        return f"{result}"
    if size == "medium":
        return f"{left} {op} {right} = {result}."
    return (
        f"Let me compute it step by step. {left} {op} {right} = {result}. The answer is {result}."
    )


def answer_text(model: str, prompt: str) -> str:
    size = model_size(model)
    seed = _digest(model_size(model), prompt)
    arithmetic = _arithmetic(prompt, size, seed)
    if arithmetic is not None:
        return arithmetic
    topic = " ".join(prompt.split()[:8]).rstrip("?.!")
    sentences = [f"You asked: {topic}." if topic else "Hello."]
    for i in range(_LENGTH[size]):
        sentences.append(_SENTENCES[(seed >> (i * 4)) % len(_SENTENCES)])
    if size == "large":
        sentences.append(
            "In summary: state the goal, check the assumptions, and verify the result."
        )
    return " ".join(sentences)


def value_for_schema(
    schema: Any, hint: str, name: str = "", root: Any = None, depth: int = 0
) -> Any:
    """A value that satisfies a (simple) JSON schema, filled from ``hint``: local references
    (``#/$defs/...``) are followed, the first non-null ``anyOf`` branch is taken, and arrays
    nested deeper than eight levels (a recursive schema) are empty."""
    root = schema if root is None else root
    schema = _resolved(schema, root)
    if not isinstance(schema, dict):
        return hint
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        if not properties:
            return {"answer": hint}
        return {
            key: value_for_schema(sub, hint, key, root, depth + 1)
            for key, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return [value_for_schema(items, hint, name, root, depth + 1)] if depth < 8 else []
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return _string_for(name, hint)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, str | None]:
    """``text`` up to the earliest stop sequence in it (which is left out, as Anthropic and
    OpenAI do), and that sequence; ``text`` and None when none occurs."""
    found = [(text.find(stop), stop) for stop in stops if stop in text]
    if not found:
        return text, None
    position, stop = min(found)
    return text[:position], stop


def _resolved(schema: Any, root: Any) -> Any:
    """``schema`` with its ``$ref`` (a JSON pointer into ``root``) and ``anyOf`` followed; a
    chain longer than ten steps (a reference cycle) ends as an empty schema."""
    for _ in range(10):
        if not isinstance(schema, dict):
            return schema
        if isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
            target: Any = root
            for part in schema["$ref"][2:].split("/"):
                target = target.get(part) if isinstance(target, dict) else None
            schema = target
        elif isinstance(schema.get("anyOf"), list) and schema["anyOf"]:
            typed = [
                b for b in schema["anyOf"] if not (isinstance(b, dict) and b.get("type") == "null")
            ]
            schema = (typed or schema["anyOf"])[0]
        else:
            return schema
    return {}


def _string_for(name: str, hint: str) -> str:
    if name in ("city", "location", "place"):
        capitalized = re.findall(r"\b[A-Z][a-z]+\b", hint)
        return capitalized[-1] if capitalized else "Paris"
    if name in ("unit", "units"):
        return "celsius"
    return hint[:80]


@dataclass
class Answer:
    text: str = ""
    tool_name: str = ""
    tool_arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def is_tool_call(self) -> bool:
        return bool(self.tool_name)


@dataclass
class Tool:
    name: str
    schema: dict[str, Any]


def wants_tool(
    prompt: str, tools: list[Tool], forced: str | None, required: bool = False
) -> Tool | None:
    """The tool to call: the one ``forced`` names, the first when any is ``required``, else one
    the prompt asks for."""
    if not tools:
        return None
    if forced:
        return next((t for t in tools if t.name == forced), tools[0])
    if required:
        return tools[0]
    lowered = prompt.lower()
    for tool in tools:
        if tool.name.lower() in lowered or tool.name.lower().replace("_", " ") in lowered:
            return tool
    if any(word in lowered for word in ("weather", "use the tool", "call the", "look up")):
        return tools[0]
    return None


def decide(
    *,
    model: str,
    prompt: str,
    tools: list[Tool],
    forced_tool: str | None,
    last_is_tool_result: bool,
    tool_required: bool = False,
    tool_result: str = "",
    json_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
) -> Answer:
    """The fake model's whole decision: call a tool, answer JSON, or answer text. After a tool
    result it calls no tool unless one is forced, and follows an output schema or JSON mode as
    on a first turn (a real model does), with the result as its text. A call required of any
    tool after a result goes to the last tool offered, where clients put their output tools
    (pydantic-ai's ``final_result``): the first would be called again and again."""
    if last_is_tool_result:
        tool = wants_tool("", tools, forced_tool) if forced_tool else None
        tool = tools[-1] if tool_required and tools and not forced_tool else tool
        text = f"Based on the tool result: {tool_result[:200]}"
    else:
        tool = wants_tool(prompt, tools, forced_tool, tool_required)
        text = answer_text(model, prompt)
    if tool is not None:
        arguments = value_for_schema(tool.schema or {"type": "object"}, prompt)
        return Answer(
            tool_name=tool.name, tool_arguments=arguments if isinstance(arguments, dict) else {}
        )
    if json_schema is not None:
        return Answer(text=orjson.dumps(value_for_schema(json_schema, text)).decode())
    if json_mode:
        return Answer(text=orjson.dumps({"answer": text, "model_size": model_size(model)}).decode())
    return Answer(text=text)
