"""JSON Schema as Gemini's JSON Schema fields take it.

Schemas go to ``responseJsonSchema`` and a declaration's ``parametersJsonSchema``, which take
references (``$defs``/``$ref``, as every nested pydantic model has), ``anyOf`` and
``additionalProperties``; the OpenAPI-subset fields (``responseSchema``, ``parameters``) refuse
those. What those fields still refuse or misread is rewritten here:

- the meta keywords outside JSON Schema's vocabulary there (``$schema``, ``strict``) are left out;
- a ``$ref`` with anything besides it (pydantic's ``Field(description=..., examples=[...])`` on
  a nested model) is refused ("... was set alongside unsupported fields"): it becomes
  ``{"anyOf": [{"$ref": ...}], ...}``, which means the same;
- draft-07 ``definitions`` become ``$defs`` (and ``#/definitions/`` pointers ``#/$defs/``);
- ``nullable: true``, the OpenAPI subset's keyword, becomes ``"null"`` in the ``type`` list.
"""

from __future__ import annotations

from typing import Any

_UNSUPPORTED_SCHEMA_KEYS = {"$schema", "strict"}
# Keywords whose value is data (kept as sent) or a map of names to schemas.
_DATA_KEYS = {"enum", "const", "default", "examples"}
_NAMED_SCHEMAS = {"properties", "$defs", "definitions", "patternProperties"}
_OLD_DEFS, _DEFS = "#/definitions/", "#/$defs/"


def schema_for_gemini(schema: Any) -> Any:
    if isinstance(schema, list):
        return [schema_for_gemini(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _UNSUPPORTED_SCHEMA_KEYS:
            continue
        if key in _NAMED_SCHEMAS:
            name, named = ("$defs" if key == "definitions" else key), _named_for_gemini(value)
            both = isinstance(out.get(name), dict) and isinstance(named, dict)
            out[name] = out[name] | named if both else named
        elif key == "$ref" and isinstance(value, str) and value.startswith(_OLD_DEFS):
            out[key] = _DEFS + value.removeprefix(_OLD_DEFS)
        else:
            out[key] = value if key in _DATA_KEYS else schema_for_gemini(value)
    return _ref_alone(_nullable_as_type(out))


def _named_for_gemini(named: Any) -> Any:
    """A map of names to schemas keeps every name (a field may be called ``strict``)."""
    if not isinstance(named, dict):
        return schema_for_gemini(named)
    return {name: schema_for_gemini(sub) for name, sub in named.items()}


def _ref_alone(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema or len(schema) == 1 or "anyOf" in schema:
        return schema
    others = {k: v for k, v in schema.items() if k != "$ref"}
    return {"anyOf": [{"$ref": schema["$ref"]}]} | others


def _nullable_as_type(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"type": t, "nullable": true}`` → ``{"type": [t, "null"]}``; without a ``type`` the
    keyword is left as sent."""
    if "nullable" not in schema or "type" not in schema:
        return schema
    rest = {k: v for k, v in schema.items() if k != "nullable"}
    if schema["nullable"] is not True:
        return rest
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return rest | {"type": types if "null" in types else [*types, "null"]}
