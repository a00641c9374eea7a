"""``/api/v1/pipelines``: an organization's pipelines and their versions (members read, admins
write). Each write of a definition is a new immutable version, made active at once; serving
(``routing.gateway.pipeline``) reads the active one.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Organization, Role
from accounts.tenant_api import TenantAPIView
from routerhub.body_limits import PIPELINE_IMPORT_MAX_BYTES, declared_body_length
from routerhub.errors import BadRequest, Conflict, NotFound
from routerhub.parsers import JSONParser
from routerhub.router_names import routers_named_lock
from routerhub.text import validate_no_control_characters
from routing.models import Pipeline, PipelineKind, PipelineVersion
from routing.pipeline_rows import pipeline_rows_changed
from routing.pipeline_spec import spec_validate
from routing.pipeline_ubiops import ubiops_definition
from routing.selectors import catalog_model_ids
from training.serving import Router, cascade_report

ADMIN_WRITES = {"POST": Role.ADMIN, "DELETE": Role.ADMIN}
IMPORT_MAX_BYTES = PIPELINE_IMPORT_MAX_BYTES  # also bounds a chunked body (body_limits)


class PipelineDefinition(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=PipelineKind.choices)
    steps = serializers.ListField(
        child=serializers.DictField(),
        max_length=64,
        help_text="Cascade and series: the steps in order; parallel: the branches. A step is "
        "{model, gate?, pre_gate?, template?, response_format?}; gate.type is non_empty, regex, "
        "json, json_schema, judge {model, template?, min_score?} or logprob {min_mean}.",
    )
    aggregate = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="Parallel only (required there): {type: first_valid (gate?) | fastest | "
        "majority | judge | synthesize (model, template?)}.",
    )
    branch_timeout_s = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Parallel only: seconds a branch may take (default PIPELINE_BRANCH_TIMEOUT).",
    )


class PipelineInput(PipelineDefinition):
    slug = serializers.SlugField(max_length=60)
    name = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        validators=[validate_no_control_characters],
    )


class PipelineOutput(serializers.Serializer[Any]):
    """What ``pipeline_json`` returns (documents the OpenAPI schema)."""

    slug = serializers.SlugField()
    model = serializers.CharField(help_text="What to send as model: pipeline/<slug>.")
    name = serializers.CharField()
    version = serializers.IntegerField(allow_null=True, help_text="The active version.")
    kind = serializers.ChoiceField(choices=PipelineKind.choices, allow_null=True)
    steps = serializers.ListField(child=serializers.DictField())
    aggregate = serializers.DictField(required=False, help_text="Parallel pipelines only.")
    branch_timeout_s = serializers.FloatField(
        required=False, help_text="When the pipeline set one."
    )
    created_at = serializers.DateTimeField()


class PipelineVersionOutput(PipelineDefinition):
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


def pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    version = pipeline.active_version
    return {
        "slug": pipeline.slug,
        "model": f"pipeline/{pipeline.slug}",
        "name": pipeline.name,
        "version": version.number if version else None,
        "kind": version.kind if version else None,
        "steps": version.steps if version else [],
        **(version.options if version else {}),
        "created_at": pipeline.created_at.isoformat(),
    }


def pipeline_definition(
    organization: Organization, data: dict[str, Any]
) -> tuple[str, list[Any], dict[str, Any]]:
    """The validated kind, steps and options (a parallel pipeline's aggregate and branch timeout)
    of ``data`` (``{kind, steps, aggregate?, branch_timeout_s?}``) for ``organization``."""
    routers = Router.objects.filter(organization=organization).values_list("slug", flat=True)
    fields = ("kind", "steps", "aggregate", "branch_timeout_s")
    return spec_validate(
        {name: data.get(name) for name in fields},
        catalog_models=set(catalog_model_ids()),
        router_slugs=set(routers),
    )


RESERVED_SLUGS = frozenset({"import"})


@transaction.atomic
def pipeline_create(
    organization: Organization, *, slug: str, name: str, definition: dict[str, Any]
) -> Pipeline:
    """A new pipeline of ``organization`` with ``definition`` as its first, active version;
    ``BadRequest`` naming what is wrong with the definition or a reserved slug (``import``: the
    API's ``POST /api/v1/pipelines/import``; API and dashboard refuse it alike), ``Conflict`` for
    a taken slug."""
    if slug in RESERVED_SLUGS:
        raise BadRequest(
            f"The slug '{slug}' is reserved (POST /api/v1/pipelines/import); choose another.",
            param="slug",
        )
    kind, steps, options = pipeline_definition(organization, definition)
    if Pipeline.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(f"A pipeline with slug '{slug}' already exists.", param="slug")
    pipeline = Pipeline.objects.create(organization=organization, slug=slug, name=name or slug)
    pipeline_version_add(pipeline, kind, steps, options)  # serving's caches: pipeline_rows_changed
    return pipeline


@transaction.atomic
def pipeline_version_add(
    pipeline: Pipeline, kind: str, steps: list[Any], options: dict[str, Any] | None = None
) -> PipelineVersion:
    """A new version of ``pipeline``, active from now on (in every serving process within
    ``PIPELINE_CACHE_TTL``; in this one as it commits)."""
    Pipeline.objects.select_for_update().filter(pk=pipeline.pk).first()  # numbers in order
    routers_named_lock(pipeline.organization_id, _routers_called(steps))  # a delete waits
    last = pipeline.versions.aggregate(last=Max("number"))["last"] or 0
    version = PipelineVersion.objects.create(
        pipeline=pipeline, number=last + 1, kind=kind, steps=steps, options=options or {}
    )
    pipeline.active_version = version
    pipeline.save(update_fields=["active_version"])
    pipeline_rows_changed()
    return version


def _routers_called(steps: list[Any]) -> list[str]:
    """The ``router/<slug>`` names a version's steps call: a step's model, its pre-gate's router."""
    names = []
    for step in steps:
        if isinstance(step, dict):
            names.append(step.get("model"))
            gate = step.get("pre_gate")
            if isinstance(gate, dict) and isinstance(gate.get("router"), str):
                names.append(f"router/{gate['router']}")
    return [name for name in names if isinstance(name, str)]


@transaction.atomic
def pipeline_delete(pipeline: Pipeline) -> None:
    """Delete ``pipeline`` and its versions; ``pipeline/<slug>`` is then 404 (every serving
    process within ``PIPELINE_CACHE_TTL``)."""
    pipeline.delete()
    pipeline_rows_changed()


class _PipelineScoped(TenantAPIView):
    tenant_model = Pipeline
    required_roles = ADMIN_WRITES
    parser_classes = [JSONParser]
    lookup_url_kwarg = "slug"
    lookup_field = "slug"

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("active_version").order_by("slug")


class PipelineListView(_PipelineScoped):
    @extend_schema(responses=PipelineOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([pipeline_json(p) for p in page or []])

    @extend_schema(request=PipelineInput, responses={201: PipelineOutput})
    def post(self, request: Request) -> Response:
        data = PipelineInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        pipeline = pipeline_create(
            self.organization, slug=values["slug"], name=values.get("name", ""), definition=values
        )
        return Response(pipeline_json(pipeline), status=status.HTTP_201_CREATED)


class PipelineDetailView(_PipelineScoped):
    @extend_schema(responses=PipelineOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(pipeline_json(self.get_object()))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, slug: str) -> Response:
        pipeline_delete(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PipelineVersionListView(_PipelineScoped):
    """``GET`` the versions; ``POST`` a new definition, which becomes the active version."""

    @extend_schema(responses=PipelineVersionOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        versions = self.paginate_queryset(self.get_object().versions.order_by("-number"))
        return self.get_paginated_response(
            [
                {
                    "version": v.number,
                    "kind": v.kind,
                    "steps": v.steps,
                    **v.options,
                    "created_at": v.created_at.isoformat(),
                }
                for v in versions or []
            ]
        )

    @extend_schema(request=PipelineDefinition, responses={201: PipelineOutput})
    def post(self, request: Request, slug: str) -> Response:
        pipeline = self.get_object()
        data = PipelineDefinition(data=request.data)
        data.is_valid(raise_exception=True)
        kind, steps, options = pipeline_definition(self.organization, data.validated_data)
        pipeline_version_add(pipeline, kind, steps, options)
        return Response(pipeline_json(pipeline), status=status.HTTP_201_CREATED)


class UbiOpsImportInput(serializers.Serializer[Any]):
    slug = serializers.SlugField(max_length=60)
    name = serializers.CharField(
        max_length=120,
        required=False,
        allow_blank=True,
        validators=[validate_no_control_characters],
    )
    ubiops = serializers.DictField(
        help_text="The UbiOps pipeline version as its API or export gives it: objects, "
        "attachments and, optionally, input_type/input_fields and output_type/output_fields."
    )
    deployments = serializers.DictField(
        child=serializers.CharField(max_length=200),
        help_text="Each UbiOps deployment name (an object's reference_name) → a RouterHub "
        "catalog model id or router/<slug> of this organization.",
    )
    aggregate = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="A fan-out joined at pipeline_end: how to combine the answers (as a parallel "
        "pipeline's aggregate). Joined by a deployment: synthesize (default) or judge with it.",
    )
    branch_timeout_s = serializers.FloatField(required=False, allow_null=True)


def pipeline_import_ubiops(organization: Organization, values: dict[str, Any]) -> Pipeline:
    """A new pipeline of ``organization`` equivalent to the UbiOps pipeline version in
    ``values``; ``BadRequest`` naming the UbiOps object at fault, and nothing created."""
    definition, origins = ubiops_definition(
        values["ubiops"], values["deployments"], values.get("aggregate")
    )
    definition["branch_timeout_s"] = values.get("branch_timeout_s")
    try:
        return pipeline_create(
            organization, slug=values["slug"], name=values.get("name", ""), definition=definition
        )
    except BadRequest as error:
        param = error.param or ""
        # Only the aggregate's model is the joining deployment's; its other fields are the
        # request's own ``aggregate``, named as it is.
        index = len(definition["steps"]) if param == "aggregate.model" else None
        if param.startswith("steps["):
            index = int(param[len("steps[") :].split("]")[0])
        if index is None or index >= len(origins):
            raise
        raise BadRequest(
            f"object '{origins[index]}': {error.message}",
            param=f"ubiops.objects.{origins[index]}",
            metadata=error.metadata,
        ) from None


# GET and DELETE here are /pipelines/{slug}'s for a pipeline named "import": documented there once.
@extend_schema_view(get=extend_schema(exclude=True), delete=extend_schema(exclude=True))
class PipelineImportView(PipelineDetailView):
    """``POST`` a UbiOps pipeline version (objects + attachments) and a deployment → model
    mapping: a new pipeline (series or parallel), or 400 naming what has no equivalent. The
    detail view's other methods (``GET``, ``DELETE``) reach a pipeline whose slug is ``import``
    (made before the slug was reserved): the URL passes ``slug="import"``."""

    @extend_schema(request=UbiOpsImportInput, responses={201: PipelineOutput})
    def post(self, request: Request, slug: str = "import") -> Response:
        declared_body_length(request.META.get("CONTENT_LENGTH"), limit=IMPORT_MAX_BYTES)
        data = UbiOpsImportInput(data=request.data)
        data.is_valid(raise_exception=True)
        pipeline = pipeline_import_ubiops(self.organization, data.validated_data)
        return Response(pipeline_json(pipeline), status=status.HTTP_201_CREATED)


class CascadePointOutput(serializers.Serializer[Any]):
    min_score = serializers.FloatField(
        allow_null=True, help_text="The pre-call gate threshold; null: the steps' own."
    )
    score = serializers.FloatField(help_text="Mean score of the served answers.")
    cost = serializers.FloatField(help_text="Mean cost per request.")
    share = serializers.ListField(
        child=serializers.FloatField(), help_text="Share of rows each step served."
    )


class PipelineReportOutput(serializers.Serializer[Any]):
    """What ``pipeline_report`` returns (documents the OpenAPI schema)."""

    pipeline = serializers.SlugField()
    version = serializers.IntegerField()
    router = serializers.SlugField()
    router_version = serializers.IntegerField()
    evaluation = serializers.DictField(help_text="method, folds and held-out rows replayed.")
    note = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField())
    curve = CascadePointOutput(many=True, help_text="One point per swept threshold.")
    configured = CascadePointOutput(help_text="The cascade as defined (its own thresholds).")
    router_curve = serializers.ListField(
        child=serializers.DictField(), help_text="The router version's own curve, per tradeoff."
    )
    models = serializers.ListField(child=serializers.DictField())
    aiq = serializers.DictField(
        allow_null=True, help_text="Area under each curve over the same cost range."
    )


def pipeline_report(
    organization: Organization, pipeline: Pipeline, router_slug: str | None
) -> dict[str, Any]:
    """The active cascade version replayed on a router's held-out rows (``router_slug``, or the
    router its pre-call gates name)."""
    version = pipeline.active_version
    if version is None or version.kind != PipelineKind.CASCADE:
        raise Conflict("Only a cascade has an evaluation report.", param="slug")
    named = [s["pre_gate"]["router"] for s in version.steps if s.get("pre_gate")]
    slug = router_slug or (named[0] if named else None)
    if not slug:
        raise BadRequest(
            "router is required: no pre-call gate of this cascade names a router.", param="router"
        )
    routers = Router.objects.select_related("active_version__dataset")
    router = routers.filter(organization=organization, slug=slug).first()
    if router is None:
        raise NotFound(f"No router '{slug}' in this organization.", param="router")
    if router.active_version is None:
        raise Conflict(f"Router '{slug}' has no trained version yet.", param="router")
    report = cascade_report(version=router.active_version, steps=version.steps)
    return {"pipeline": pipeline.slug, "version": version.number, "router": slug, **report}


class PipelineReportView(_PipelineScoped):
    """The cascade's expected score and cost on a router's held-out rows for a sweep of
    pre-call gate thresholds, beside the router's own curve."""

    @extend_schema(
        parameters=[OpenApiParameter("router", str, description="A router slug.")],
        responses=PipelineReportOutput,
    )
    def get(self, request: Request, slug: str) -> Response:
        router = request.query_params.get("router") or None
        return Response(pipeline_report(self.organization, self.get_object(), router))
