"""A UbiOps pipeline version (its ``objects`` and ``attachments``, as UbiOps' API and exports give
them) turned into a RouterHub pipeline definition, or ``BadRequest`` naming the object at fault.

UbiOps objects are deployments, operators and sub-pipelines; attachments connect a destination
object to its sources (``pipeline_start`` is the request, ``pipeline_end`` the response). Each
deployment is mapped by its ``reference_name`` to a catalog model or ``router/<slug>``. Two
shapes have a RouterHub equivalent:

- a chain ``pipeline_start → d1 → … → dn → pipeline_end``: a ``series`` (each answer is the next
  step's input, as the attachment's field mapping passed it on);
- a fan-out ``pipeline_start → {d1 … dn}`` joined once: a ``parallel`` pipeline. Joined by a
  deployment that feeds ``pipeline_end``, that deployment combines the answers (``synthesize``
  with its model; ``aggregate: {"type": "judge"}`` picks one with it instead); joined at
  ``pipeline_end`` itself, ``aggregate`` says how to combine them.

Attachment field mappings are checked against the fields the objects declare
(``routing.pipeline_ubiops_fields``). Everything else is refused: operators (functions, conditions, variables, subrequests, errors),
sub-pipelines, cycles, unattached objects, unmapped deployments, other shapes, request or
response fields that are not one text field, and a joining deployment whose sources do not all
map one and the same field.
"""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest
from routing.pipeline_ubiops_fields import mappings_check

START, END = "pipeline_start", "pipeline_end"
MAX_OBJECTS = 64
MAX_ATTACHMENTS = 128
MAX_SOURCES = 16  # of one attachment
_TEXT_TYPES = ("string",)
_OPERATOR_REASONS = {
    "if-condition": "it routes on request fields, which RouterHub cannot express (a cascade's "
    "gates decide on answers, not inputs)",
    "function": "it computes fields with an expression; RouterHub steps pass text only",
    "raise-error": "it raises an error on a condition RouterHub cannot express",
    "one-to-many": "it splits a request into subrequests; RouterHub has no subrequests",
    "many-to-one": "it collects subrequests; RouterHub has no subrequests",
    "count-many": "it counts subrequests; RouterHub has no subrequests",
    "pipeline-variable": "it adds constant fields; RouterHub steps pass text only",
}


def _refuse(message: str, param: str = "ubiops") -> BadRequest:
    return BadRequest(message, param=param)


def ubiops_definition(
    export: Any, deployments: Any, aggregate: Any = None
) -> tuple[dict[str, Any], list[str]]:
    """The RouterHub definition ``{kind, steps, aggregate?}`` of ``export`` and, per step (and
    then the aggregate's model, if any), the UbiOps object it came from."""
    if not isinstance(export, dict):
        raise _refuse("ubiops must be a pipeline version object {objects, attachments}.")
    if (
        not isinstance(deployments, dict)
        or len(deployments) > MAX_OBJECTS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in deployments.items())
    ):
        raise _refuse(
            f"deployments must map each UbiOps deployment name (at most {MAX_OBJECTS}) to a "
            "RouterHub model id or router/<slug>.",
            "deployments",
        )
    _fields_check(export, "input")
    _fields_check(export, "output")
    objects = _objects(export.get("objects"), deployments)
    sources = _attachments(export.get("attachments"), objects)
    mappings_check(export)
    order = _topological(objects, sources)
    targets: dict[str, list[str]] = {name: [] for name in [START, *objects]}
    for destination in [*order, END]:
        for source in sources.get(destination, []):
            targets[source].append(destination)
    for name in objects:
        if not sources.get(name) or not targets[name]:
            raise _refuse(
                f"object '{name}' is not attached between pipeline_start and pipeline_end.",
                f"ubiops.objects.{name}",
            )
    if len(targets[START]) == 1:
        return _series(objects, sources, targets)
    definition, origins = _parallel(objects, sources, targets, aggregate)
    if len(origins) > len(definition["steps"]):  # joined by a deployment: it synthesizes or judges
        _join_mapping_check(export["attachments"], origins[-1])
    return definition, origins


def _join_mapping_check(attachments: list[Any], join: str) -> None:
    """The joining deployment reads the branches' answers as one text: every source of its
    attachments must map one field (``mapping``), the same for all, or the import is refused
    naming the attachment (different fields would be lost in a generic synthesize)."""
    seen: list[str] = []
    for index, item in enumerate(attachments):
        if item["destination_name"] != join:
            continue
        for source in item["sources"]:
            mapping = source.get("mapping")
            fields = [m.get("destination_field_name") for m in mapping or [] if isinstance(m, dict)]
            if len(fields) != 1 or not isinstance(fields[0], str):
                problem = f"source '{source['source_name']}' maps {len(fields)} fields"
            elif seen and fields[0] != seen[0]:
                problem = f"its sources map '{seen[0]}' and '{fields[0]}'"
            else:
                seen.append(fields[0])
                continue
            raise _refuse(
                f"attachments[{index}]: object '{join}' joins the branches, so RouterHub passes "
                f"it their answers as one text; every source must map to the same single input "
                f"field, and {problem}.",
                f"ubiops.attachments[{index}]",
            )


def _fields_check(export: dict[str, Any], side: str) -> None:
    """A pipeline's request (``input``) or response (``output``): plain, or one text field."""
    kind, fields = export.get(f"{side}_type"), export.get(f"{side}_fields")
    if kind in (None, "plain") and not fields:
        return
    if kind not in (None, "structured", "plain"):
        raise _refuse(f"{side}_type '{kind}' is not plain or structured.", f"ubiops.{side}_type")
    if not isinstance(fields, list) or len(fields) != 1 or not isinstance(fields[0], dict):
        count = len(fields) if isinstance(fields, list) else 0
        raise _refuse(
            f"{side}_fields: a RouterHub pipeline's {side} is one text (a chat message); "
            f"this pipeline has {count} {side} fields.",
            f"ubiops.{side}_fields",
        )
    field = fields[0]
    if field.get("data_type") not in _TEXT_TYPES:
        raise _refuse(
            f"{side}_fields: field '{field.get('name')}' is {field.get('data_type')}, not string; "
            "RouterHub pipelines pass text only.",
            f"ubiops.{side}_fields",
        )


def _objects(objects: Any, deployments: dict[str, str]) -> dict[str, str]:
    """Each object's name and the RouterHub model its deployment maps to."""
    if not isinstance(objects, list) or not 0 < len(objects) <= MAX_OBJECTS:
        raise _refuse(
            f"objects must be a list of 1 to {MAX_OBJECTS} pipeline objects.", "ubiops.objects"
        )
    models: dict[str, str] = {}
    for index, item in enumerate(objects):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or name in (START, END) or name in models:
            raise _refuse(
                f"objects[{index}] needs a name of its own (not pipeline_start or pipeline_end).",
                f"ubiops.objects[{index}]",
            )
        assert isinstance(item, dict)
        models[name] = _object_model(name, item, deployments)
    return models


def _object_model(name: str, item: dict[str, Any], deployments: dict[str, str]) -> str:
    param = f"ubiops.objects.{name}"
    kind = item.get("reference_type") or "deployment"
    reference = item.get("reference_name")
    if kind == "operator":
        reason = _OPERATOR_REASONS.get(
            str(reference), "custom operators have no RouterHub equivalent"
        )
        raise _refuse(f"object '{name}' is the operator '{reference}': {reason}.", param)
    if kind == "pipeline":
        raise _refuse(
            f"object '{name}' is the sub-pipeline '{reference}': a RouterHub pipeline cannot "
            "call a pipeline; import that pipeline's deployments instead.",
            param,
        )
    if kind != "deployment":
        raise _refuse(f"object '{name}' has reference_type '{kind}', not deployment.", param)
    if not isinstance(reference, str) or reference not in deployments:
        raise _refuse(
            f"object '{name}': deployment '{reference}' is not in deployments; map it to a "
            "RouterHub model id or router/<slug>.",
            param,
        )
    return deployments[reference]


def _attachments(attachments: Any, objects: dict[str, str]) -> dict[str, list[str]]:
    """Each destination's sources, in the order given."""
    if not isinstance(attachments, list) or not 0 < len(attachments) <= MAX_ATTACHMENTS:
        raise _refuse(
            f"attachments must be a list of 1 to {MAX_ATTACHMENTS} attachments.",
            "ubiops.attachments",
        )
    sources: dict[str, list[str]] = {}
    for index, item in enumerate(attachments):
        param = f"ubiops.attachments[{index}]"
        destination = item.get("destination_name") if isinstance(item, dict) else None
        if not isinstance(destination, str) or (destination != END and destination not in objects):
            raise _refuse(f"attachments[{index}]: unknown destination '{destination}'.", param)
        assert isinstance(item, dict)
        given = item.get("sources")
        if not isinstance(given, list) or not 0 < len(given) <= MAX_SOURCES:
            raise _refuse(
                f"attachments[{index}].sources must list 1 to {MAX_SOURCES} sources.", param
            )
        for source in given:
            name = source.get("source_name") if isinstance(source, dict) else None
            if not isinstance(name, str) or (name != START and name not in objects):
                raise _refuse(f"attachments[{index}]: unknown source '{name}'.", param)
            if name == destination:
                raise _refuse(f"object '{name}' is attached to itself (a cycle).", param)
            if name not in sources.setdefault(destination, []):
                sources[destination].append(name)
    return sources


def _topological(objects: dict[str, str], sources: dict[str, list[str]]) -> list[str]:
    """The objects in an order where every source comes first; a cycle is refused."""
    done: list[str] = []
    waiting = dict.fromkeys(objects)
    while waiting:
        ready = [n for n in waiting if all(s == START or s in done for s in sources.get(n, []))]
        if not ready:
            name = next(iter(waiting))
            raise _refuse(
                f"object '{name}' is in a cycle of attachments; RouterHub pipelines run each "
                "model once, in order.",
                f"ubiops.objects.{name}",
            )
        for name in ready:
            done.append(name)
            del waiting[name]
    return done


def _shape_error(name: str, sources: list[str], targets: list[str]) -> BadRequest:
    return _refuse(
        f"object '{name}' has {len(sources)} source(s) ({', '.join(sources)}) and "
        f"{len(targets)} destination(s) ({', '.join(targets)}); RouterHub takes a chain "
        "(series) or one fan-out from pipeline_start joined once (parallel).",
        f"ubiops.objects.{name}",
    )


def _series(
    objects: dict[str, str],
    sources: dict[str, list[str]],
    targets: dict[str, list[str]],
) -> tuple[dict[str, Any], list[str]]:
    chain: list[str] = []
    node = targets[START][0]
    while node != END:
        if len(sources[node]) != 1 or len(targets[node]) != 1:
            raise _shape_error(node, sources[node], targets[node])
        chain.append(node)
        node = targets[node][0]
    if len(sources[END]) != 1 or len(chain) != len(objects):
        raise _refuse(
            "pipeline_end has several sources; a chain has one (a fan-out starts at "
            "pipeline_start).",
            "ubiops.attachments",
        )
    if not chain:
        raise _refuse(
            "pipeline_start is attached to pipeline_end directly: no model to call.",
            "ubiops.attachments",
        )
    return {"kind": "series", "steps": [{"model": objects[n]} for n in chain]}, chain


def _parallel(
    objects: dict[str, str],
    sources: dict[str, list[str]],
    targets: dict[str, list[str]],
    aggregate: Any,
) -> tuple[dict[str, Any], list[str]]:
    branches = targets[START]
    if END in branches:
        raise _refuse(
            "pipeline_start is attached to pipeline_end directly beside the deployments; "
            "every branch must call a model.",
            "ubiops.attachments",
        )
    for branch in branches:
        if sources[branch] != [START]:
            raise _shape_error(branch, sources[branch], targets[branch])
    join = targets[branches[0]][0]
    for branch in branches:
        if targets[branch] != [join]:
            raise _shape_error(branch, sources[branch], targets[branch])
    if sorted(sources[join]) != sorted(branches):
        raise _shape_error(join, sources[join], targets.get(join, [END]))
    steps = [{"model": objects[b]} for b in branches]
    definition: dict[str, Any] = {"kind": "parallel", "steps": steps}
    if join == END:
        if len(objects) != len(branches):
            raise _shape_error(branches[0], sources[branches[0]], targets[branches[0]])
        if not isinstance(aggregate, dict):
            raise _refuse(
                "pipeline_end joins several deployments: say how to combine their answers with "
                "aggregate (first_valid, fastest, majority, judge or synthesize).",
                "aggregate",
            )
        definition["aggregate"] = aggregate
        return definition, branches
    if targets[join] != [END] or len(objects) != len(branches) + 1:
        raise _shape_error(join, sources[join], targets[join])
    chosen = {} if aggregate is None else aggregate
    kind = chosen.get("type", "synthesize") if isinstance(chosen, dict) else None
    if kind not in ("synthesize", "judge"):
        raise _refuse(
            f"aggregate: object '{join}' joins the branches, so it is the aggregate's model; "
            "aggregate.type may be synthesize (the default) or judge.",
            "aggregate",
        )
    definition["aggregate"] = {**chosen, "type": kind, "model": objects[join]}
    return definition, [*branches, join]
