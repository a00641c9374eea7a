"""A pipeline's definition, validated once when it is created (never per request).

A definition is ``{"kind": "cascade" | "series", "steps": [step, ...]}``. A step is
``{"model": "<catalog id>" | "router/<slug>", "gate": gate?, "template": "...{input}...{previous}"?,
"response_format": {...}?}``. Gates (cascade only, checked on the step's answer):
``{"type": "non_empty"}``, ``{"type": "regex", "pattern": "..."}``, ``{"type": "json"}`` and
``{"type": "json_schema", "schema": {...}}``. A cascade step other than the last may also have a
pre-call gate, decided before the call: ``"pre_gate": {"type": "router_score", "router":
"<slug>", "min_score": 0.6}`` skips the step when that trained router predicts a score below
``min_score`` for the step's model on this prompt. Refused: unknown models (the error lists the
catalog's), another pipeline as a step (no cycles: a pipeline never calls a pipeline), more than
``PIPELINE_MAX_STEPS`` steps, a regex that does not compile, a schema that is not one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import jsonschema
import orjson
from django.conf import settings
from jsonschema.exceptions import SchemaError

from routerhub.errors import BadRequest

KINDS = ("cascade", "series")
GATE_TYPES = ("non_empty", "regex", "json", "json_schema")
_STEP_FIELDS = {"model", "gate", "pre_gate", "template", "response_format"}
_MAX_PATTERN = 500
_MAX_TEMPLATE = 8_000
_MAX_SCHEMA_BYTES = 16_000


def spec_validate(
    spec: Any, *, catalog_models: Collection[str], router_slugs: Collection[str]
) -> tuple[str, list[dict[str, Any]]]:
    """The definition's kind and normalised steps, or ``BadRequest`` naming what is wrong."""
    if not isinstance(spec, dict):
        raise BadRequest("A pipeline definition is an object {kind, steps}.", param="kind")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}.", param="kind")
    steps = spec.get("steps")
    limit = settings.PIPELINE_MAX_STEPS
    if not isinstance(steps, list) or not steps:
        raise BadRequest("steps must be a non-empty list of steps.", param="steps")
    if len(steps) > limit:
        raise BadRequest(
            f"A pipeline has at most {limit} steps (PIPELINE_MAX_STEPS).", param="steps"
        )
    clean = [_step(step, i, kind, catalog_models, router_slugs) for i, step in enumerate(steps)]
    if "pre_gate" in clean[-1]:
        raise BadRequest(
            f"steps[{len(steps) - 1}].pre_gate: the last step is always called "
            "(it answers when every other step is skipped).",
            param=f"steps[{len(steps) - 1}].pre_gate",
        )
    return kind, clean


def _step(
    step: Any, index: int, kind: str, catalog_models: Collection[str], router_slugs: Collection[str]
) -> dict[str, Any]:
    param = f"steps[{index}]"
    if not isinstance(step, dict):
        raise BadRequest(f"{param} must be an object with a model.", param=param)
    unknown = sorted(set(step) - _STEP_FIELDS)
    if unknown:
        raise BadRequest(f"{param} has unknown fields: {', '.join(unknown)}.", param=param)
    _model_check(step.get("model"), f"{param}.model", catalog_models, router_slugs)
    clean: dict[str, Any] = {"model": step["model"]}
    if step.get("gate") is not None:
        if kind != "cascade":
            raise BadRequest(f"{param}.gate: only cascade steps have gates.", param=f"{param}.gate")
        clean["gate"] = _gate(step["gate"], f"{param}.gate")
    if step.get("pre_gate") is not None:
        if kind != "cascade" or clean["model"].startswith("router/"):
            raise BadRequest(
                f"{param}.pre_gate: only a cascade step naming a catalog model has "
                "a pre-call gate.",
                param=f"{param}.pre_gate",
            )
        clean["pre_gate"] = _pre_gate(step["pre_gate"], f"{param}.pre_gate", router_slugs)
    if step.get("template") is not None:
        clean["template"] = _template(step["template"], kind, f"{param}.template")
    if step.get("response_format") is not None:
        if not isinstance(step["response_format"], dict):
            raise BadRequest(
                f"{param}.response_format must be an object.", param=f"{param}.response_format"
            )
        clean["response_format"] = step["response_format"]
    return clean


def _model_check(
    model: Any, param: str, catalog_models: Collection[str], router_slugs: Collection[str]
) -> None:
    if not isinstance(model, str) or not model:
        raise BadRequest(f"{param} is required (a catalog model id or router/<slug>).", param=param)
    if model.startswith("pipeline/"):
        raise BadRequest(
            f"{param}: a pipeline cannot call a pipeline ({model}); "
            "list that pipeline's models as steps instead.",
            param=param,
        )
    if model.startswith("router/"):
        if model.removeprefix("router/") not in router_slugs:
            raise BadRequest(
                f"{param}: no router '{model}' in this organization; "
                f"routers: {', '.join(sorted(router_slugs)) or 'none'}.",
                param=param,
            )
        return
    if model not in catalog_models:
        raise BadRequest(
            f"{param}: unknown model '{model}'. Known models: {', '.join(sorted(catalog_models))}.",
            param=param,
            metadata={"models": sorted(catalog_models)},
        )


def _gate(gate: Any, param: str) -> dict[str, Any]:
    if not isinstance(gate, dict) or gate.get("type") not in GATE_TYPES:
        raise BadRequest(f"{param}.type must be one of {', '.join(GATE_TYPES)}.", param=param)
    kind = gate["type"]
    if kind == "regex":
        pattern = gate.get("pattern")
        if not isinstance(pattern, str) or not pattern or len(pattern) > _MAX_PATTERN:
            raise BadRequest(
                f"{param}.pattern must be a regex of at most {_MAX_PATTERN} characters.",
                param=param,
            )
        try:
            re.compile(pattern)
        except re.error as error:
            raise BadRequest(f"{param}.pattern does not compile: {error}.", param=param) from None
        return {"type": kind, "pattern": pattern}
    if kind == "json_schema":
        schema = gate.get("schema")
        if not isinstance(schema, dict) or len(orjson.dumps(schema)) > _MAX_SCHEMA_BYTES:
            raise BadRequest(
                f"{param}.schema must be a JSON schema object of at most "
                f"{_MAX_SCHEMA_BYTES} bytes.",
                param=param,
            )
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise BadRequest(
                f"{param}.schema is not a valid JSON schema: {error.message}", param=param
            ) from None
        return {"type": kind, "schema": schema}
    return {"type": kind}


def _pre_gate(gate: Any, param: str, router_slugs: Collection[str]) -> dict[str, Any]:
    if not isinstance(gate, dict) or gate.get("type") != "router_score":
        raise BadRequest(f"{param}.type must be router_score.", param=param)
    router, minimum = gate.get("router"), gate.get("min_score")
    if router not in router_slugs:
        raise BadRequest(
            f"{param}.router: no router '{router}' in this organization; routers: "
            f"{', '.join(sorted(router_slugs)) or 'none'}.",
            param=param,
        )
    if isinstance(minimum, bool) or not isinstance(minimum, int | float) or minimum != minimum:
        raise BadRequest(
            f"{param}.min_score must be a number (on the router's score scale, usually 0..1).",
            param=param,
        )
    return {"type": "router_score", "router": router, "min_score": float(minimum)}


def _template(template: Any, kind: str, param: str) -> str:
    if kind != "series":
        raise BadRequest(f"{param}: only series steps have templates.", param=param)
    if not isinstance(template, str) or not template or len(template) > _MAX_TEMPLATE:
        raise BadRequest(
            f"{param} must be text of at most {_MAX_TEMPLATE} characters.", param=param
        )
    if "{input}" not in template and "{previous}" not in template:
        raise BadRequest(f"{param} must use {{input}} or {{previous}}.", param=param)
    return template
