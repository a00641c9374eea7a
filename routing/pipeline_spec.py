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

Two more post-call gates: ``{"type": "judge", "model": "<catalog id>", "template": "...{input}
...{answer}..."?, "min_score": 0.5?}`` (a judge model's verdict: PASS, FAIL or a score) and
``{"type": "logprob", "min_mean": -0.7}`` (the answer's mean token log probability, asked of the
provider). A **parallel** definition's steps are its branches (at most ``PIPELINE_MAX_BRANCHES``;
no gates, no templates) and it has ``aggregate``: ``{"type": "first_valid", "gate": gate?}``,
``{"type": "fastest"}``, ``{"type": "majority"}``, or ``{"type": "judge" | "synthesize", "model":
"<catalog id>", "template": "...{input}...{answers}..."?}``; and optionally ``branch_timeout_s``
(else ``PIPELINE_BRANCH_TIMEOUT``). ``spec_validate`` returns those two as the version's options.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, TypeGuard

import jsonschema
import orjson
from django.conf import settings
from jsonschema.exceptions import SchemaError

from routerhub.body_limits import MAX_JSON_DEPTH, nested_deeper_than
from routerhub.errors import BadRequest

KINDS = ("cascade", "series", "parallel")
GATE_TYPES = ("non_empty", "regex", "json", "json_schema", "judge", "logprob")
AGGREGATES = ("first_valid", "fastest", "majority", "judge", "synthesize")
_ANSWER_GATES = ("non_empty", "regex", "json", "json_schema")  # first_valid's (no model call)
_JUDGE_GATE_FIELDS = ("{input}", "{answer}")
_AGGREGATE_FIELDS = ("{input}", "{answers}")
_STEP_FIELDS = {"model", "gate", "pre_gate", "template", "response_format"}
_MAX_PATTERN = 500
_MAX_TEMPLATE = 8_000
_MAX_SCHEMA_BYTES = 16_000


def spec_validate(
    spec: Any, *, catalog_models: Collection[str], router_slugs: Collection[str]
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """The definition's kind, normalised steps and options, or ``BadRequest`` naming what is
    wrong."""
    if not isinstance(spec, dict):
        raise BadRequest("A pipeline definition is an object {kind, steps}.", param="kind")
    if nested_deeper_than(None, spec, MAX_JSON_DEPTH):  # a stored step is written again per call
        raise BadRequest(
            f"The definition nests arrays and objects more than {MAX_JSON_DEPTH} levels deep; "
            "flatten it (schemas included).",
            param="steps",
        )
    kind = spec.get("kind")
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}.", param="kind")
    steps = spec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise BadRequest("steps must be a non-empty list of steps.", param="steps")
    _count_check(kind, len(steps))
    clean = [_step(step, i, kind, catalog_models, router_slugs) for i, step in enumerate(steps)]
    if "pre_gate" in clean[-1]:
        raise BadRequest(
            f"steps[{len(steps) - 1}].pre_gate: the last step is always called "
            "(it answers when every other step is skipped).",
            param=f"steps[{len(steps) - 1}].pre_gate",
        )
    return kind, clean, _options(spec, kind, catalog_models)


def _count_check(kind: str, count: int) -> None:
    if kind == "parallel":
        limit, what, setting = settings.PIPELINE_MAX_BRANCHES, "branches", "PIPELINE_MAX_BRANCHES"
    else:
        limit, what, setting = settings.PIPELINE_MAX_STEPS, "steps", "PIPELINE_MAX_STEPS"
    if count > limit:
        raise BadRequest(
            f"A {kind} pipeline has at most {limit} {what} ({setting}); this one has {count}.",
            param="steps",
        )


def _options(spec: dict[str, Any], kind: str, catalog_models: Collection[str]) -> dict[str, Any]:
    """A parallel pipeline's aggregate and branch timeout; nothing for the other kinds."""
    if kind != "parallel":
        for name in ("aggregate", "branch_timeout_s"):
            if spec.get(name) is not None:
                raise BadRequest(f"{name}: only parallel pipelines have one.", param=name)
        return {}
    options: dict[str, Any] = {"aggregate": _aggregate(spec.get("aggregate"), catalog_models)}
    timeout = spec.get("branch_timeout_s")
    if timeout is not None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= settings.GATEWAY_TOTAL_TIMEOUT
        ):
            raise BadRequest(
                "branch_timeout_s must be a number of seconds above 0 and at most "
                f"{settings.GATEWAY_TOTAL_TIMEOUT:g} (GATEWAY_TOTAL_TIMEOUT).",
                param="branch_timeout_s",
            )
        options["branch_timeout_s"] = float(timeout)
    return options


def _aggregate(aggregate: Any, catalog_models: Collection[str]) -> dict[str, Any]:
    param = "aggregate"
    if not isinstance(aggregate, dict) or aggregate.get("type") not in AGGREGATES:
        raise BadRequest(
            f"{param}.type is required for a parallel pipeline, one of {', '.join(AGGREGATES)}.",
            param=param,
        )
    kind = aggregate["type"]
    if kind in ("fastest", "majority"):
        return {"type": kind}
    if kind == "first_valid":
        gate = aggregate.get("gate") or {"type": "non_empty"}
        if not isinstance(gate, dict) or gate.get("type") not in _ANSWER_GATES:
            raise BadRequest(
                f"{param}.gate.type must be one of {', '.join(_ANSWER_GATES)}.", param=param
            )
        return {"type": kind, "gate": _gate(gate, f"{param}.gate", catalog_models)}
    clean: dict[str, Any] = {"type": kind}
    clean["model"] = _judge_model(aggregate.get("model"), f"{param}.model", catalog_models)
    if aggregate.get("template") is not None:
        clean["template"] = _text_with(
            aggregate["template"], _AGGREGATE_FIELDS, f"{param}.template"
        )
    return clean


def _judge_model(model: Any, param: str, catalog_models: Collection[str]) -> str:
    """A judge's or synthesiser's model: a catalog model (a router would pick a judge by the
    judge prompt, which is not what its owner trained it on)."""
    if not isinstance(model, str) or model not in catalog_models:
        raise BadRequest(
            f"{param}: unknown model '{model}'. Known models: {', '.join(sorted(catalog_models))}.",
            param=param,
            metadata={"models": sorted(catalog_models)},
        )
    return model


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
        clean["gate"] = _gate(step["gate"], f"{param}.gate", catalog_models)
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


def _gate(gate: Any, param: str, catalog_models: Collection[str]) -> dict[str, Any]:
    if not isinstance(gate, dict) or gate.get("type") not in GATE_TYPES:
        raise BadRequest(f"{param}.type must be one of {', '.join(GATE_TYPES)}.", param=param)
    kind = gate["type"]
    if kind == "judge":
        return _judge_gate(gate, param, catalog_models)
    if kind == "logprob":
        minimum = gate.get("min_mean")
        if not _number(minimum) or minimum > 0:
            raise BadRequest(
                f"{param}.min_mean must be a number at most 0 (a mean log probability).",
                param=param,
            )
        return {"type": kind, "min_mean": float(minimum)}
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
    if not _number(minimum):
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


def _judge_gate(
    gate: dict[str, Any], param: str, catalog_models: Collection[str]
) -> dict[str, Any]:
    clean: dict[str, Any] = {
        "type": "judge",
        "model": _judge_model(gate.get("model"), f"{param}.model", catalog_models),
    }
    if gate.get("template") is not None:
        clean["template"] = _text_with(gate["template"], _JUDGE_GATE_FIELDS, f"{param}.template")
    minimum = gate.get("min_score", 0.5)
    if not _number(minimum):
        raise BadRequest(f"{param}.min_score must be a number.", param=param)
    clean["min_score"] = float(minimum)
    return clean


def _text_with(template: Any, fields: tuple[str, ...], param: str) -> str:
    """A judge's or synthesiser's prompt template: bounded text using every one of ``fields``."""
    if not isinstance(template, str) or len(template) > _MAX_TEMPLATE:
        raise BadRequest(
            f"{param} must be text of at most {_MAX_TEMPLATE} characters.", param=param
        )
    missing = [name for name in fields if name not in template]
    if missing:
        raise BadRequest(f"{param} must use {' and '.join(fields)}.", param=param)
    return template


def _number(value: Any) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value
