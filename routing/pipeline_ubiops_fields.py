"""The field mappings of a UbiOps pipeline version's attachments, checked before it is imported.

Each attachment source maps fields: ``{source_field_name, destination_field_name}``. A field is
known when its object declares it: the pipeline's ``input_fields`` are what ``pipeline_start``
gives, its ``output_fields`` what ``pipeline_end`` takes (``input_type``/``output_type``
``plain``: no fields at all), and a deployment object's ``input_fields``/``output_fields`` (as
UbiOps' deployment details give them, copied onto the object) what it takes and gives. A mapping
naming a field its object does not declare, or joining fields of different ``data_type``, is a
``BadRequest`` naming the attachment, the object and the field. Undeclared fields are not checked.
"""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest

START, END = "pipeline_start", "pipeline_end"
MAX_FIELDS = 64  # of one object's side, or one source's mapping

Fields = dict[str, str | None]  # name → data_type


def _declared(fields: Any, kind: Any, param: str) -> Fields | None:
    """A side's fields by name, ``{}`` for an explicitly plain side, ``None`` when unknown."""
    if fields is None or fields == []:
        return {} if kind == "plain" else None
    if not isinstance(fields, list) or len(fields) > MAX_FIELDS:
        raise BadRequest(f"{param} must be a list of at most {MAX_FIELDS} fields.", param=param)
    declared: Fields = {}
    for field in fields:
        name = field.get("name") if isinstance(field, dict) else None
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{param}: each field needs a name {{name, data_type}}.", param=param)
        assert isinstance(field, dict)
        kind_of = field.get("data_type")
        declared[name] = kind_of if isinstance(kind_of, str) else None
    return declared


def _sides(export: dict[str, Any]) -> tuple[dict[str, Fields | None], dict[str, Fields | None]]:
    """What each object gives (its outputs) and takes (its inputs), where declared."""
    gives: dict[str, Fields | None] = {
        START: _declared(
            export.get("input_fields"), export.get("input_type"), "ubiops.input_fields"
        )
    }
    takes: dict[str, Fields | None] = {
        END: _declared(
            export.get("output_fields"), export.get("output_type"), "ubiops.output_fields"
        )
    }
    for item in export["objects"]:
        name = item["name"]
        param = f"ubiops.objects.{name}"
        takes[name] = _declared(item.get("input_fields"), None, f"{param}.input_fields")
        gives[name] = _declared(item.get("output_fields"), None, f"{param}.output_fields")
    return gives, takes


def _pair(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    out, into = item.get("source_field_name"), item.get("destination_field_name")
    return (out, into) if isinstance(out, str) and out and isinstance(into, str) and into else None


def _pairs(mapping: Any, where: str, param: str) -> list[tuple[str, str]]:
    """A source's ``mapping`` as ``(source field, destination field)`` pairs."""
    if mapping is None:
        return []
    pairs = [_pair(item) for item in mapping] if isinstance(mapping, list) else [None]
    if len(pairs) > MAX_FIELDS or None in pairs:
        raise BadRequest(
            f"{where}: mapping must be a list of at most {MAX_FIELDS} "
            "{source_field_name, destination_field_name}.",
            param=param,
        )
    return [p for p in pairs if p is not None]


def _listed(fields: Fields) -> str:
    return ", ".join(fields) or "none"


def mappings_check(export: dict[str, Any]) -> None:
    """Refuse a mapping to or from a field its object does not declare, or across types."""
    gives, takes = _sides(export)
    for index, attachment in enumerate(export["attachments"]):
        destination = attachment["destination_name"]
        param = f"ubiops.attachments[{index}]"
        for source in attachment["sources"]:
            origin = source["source_name"]
            where = f"attachments[{index}] ({origin} → {destination})"
            for out, into in _pairs(source.get("mapping"), where, param):
                given, taken = gives[origin], takes[destination]
                if given is not None and out not in given:
                    raise BadRequest(
                        f"{where}: '{origin}' has no output field '{out}' (its fields: "
                        f"{_listed(given)}).",
                        param=param,
                    )
                if taken is not None and into not in taken:
                    raise BadRequest(
                        f"{where}: '{destination}' has no input field '{into}' (its fields: "
                        f"{_listed(taken)}).",
                        param=param,
                    )
                kinds = (given or {}).get(out), (taken or {}).get(into)
                if None not in kinds and kinds[0] != kinds[1]:
                    raise BadRequest(
                        f"{where}: field '{out}' ({kinds[0]}) of '{origin}' is mapped to "
                        f"'{into}' ({kinds[1]}) of '{destination}'; the types must match.",
                        param=param,
                    )
