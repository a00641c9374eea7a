"""``/api/v1`` datasets, routers, training runs and router versions (members read, admins write)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.errors import BadRequest, NotFound
from routerhub.parsers import JSONParser
from training import lifecycle, services
from training.models import Dataset, Router, RouterEventKind, RouterVersion, TrainingRun
from training.serializers import (
    DatasetCreateInput,
    DatasetOutput,
    RouterDriftCheckOutput,
    RouterInput,
    RouterOutput,
    RouterVersionOutput,
    TrainingRunOutput,
    TrainInput,
)

ADMIN_WRITES = {"POST": Role.ADMIN, "PATCH": Role.ADMIN, "DELETE": Role.ADMIN}


class DatasetListView(TenantAPIView):
    tenant_model = Dataset
    required_roles = ADMIN_WRITES
    serializer_class = DatasetOutput
    parser_classes = [MultiPartParser, FormParser]

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.order_by("-created_at", "-id")

    @extend_schema(responses=DatasetOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(DatasetOutput(page, many=True).data)

    @extend_schema(
        request=DatasetCreateInput,
        responses={
            201: DatasetOutput,
            409: OpenApiResponse(
                description="The organization's datasets would pass "
                "DATASETS_MAX_BYTES_PER_ORGANIZATION (`error.metadata`: stored_bytes, size_bytes, "
                "limit_bytes), or DATASETS_MAX_VALIDATING_PER_ORGANIZATION uploads wait for "
                "validation (`error.metadata`: validating, limit); delete datasets or wait."
            ),
            503: OpenApiResponse(
                description="The file could not be stored (`param`: file); no dataset was kept, "
                "send it again."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = DatasetCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        dataset = services.dataset_create(
            organization=self.organization,
            name=data.validated_data.get("name") or upload.name or "dataset",
            upload=upload,
            columns=data.validated_data.get("columns") or {},
            maximize=data.validated_data["maximize"],
        )
        return Response(DatasetOutput(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(TenantAPIView):
    tenant_model = Dataset
    required_roles = ADMIN_WRITES
    serializer_class = DatasetOutput
    lookup_url_kwarg = "dataset_id"
    lookup_field = "pk"

    @extend_schema(responses=DatasetOutput)
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(DatasetOutput(self.get_object()).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, dataset_id: int) -> Response:
        services.dataset_delete(dataset=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def api_actor(view: TenantAPIView) -> str:
    """Who an audit entry names for an API call: its key's prefix, or the signed-in person."""
    key = view.tenant.key
    if key is not None:
        return f"key:{key.prefix}"
    return f"user:{getattr(view.request.user, 'email', '?')}"


class _RouterScoped(TenantAPIView):
    tenant_model = Router
    required_roles = ADMIN_WRITES
    lookup_url_kwarg = "slug"
    lookup_field = "slug"

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("active_version").order_by("slug")


class RouterListView(_RouterScoped):
    serializer_class = RouterOutput
    parser_classes = [JSONParser]

    @extend_schema(responses=RouterOutput(many=True))
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RouterOutput(page, many=True).data)

    @extend_schema(request=RouterInput, responses={201: RouterOutput})
    def post(self, request: Request) -> Response:
        data = RouterInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        router = services.router_create(
            organization=self.organization,
            slug=values["slug"],
            name=values.get("name") or values["slug"],
            candidates=values.get("candidates", []),
            default_tradeoff=values.get("default_tradeoff", 0.5),
            auto_activate=values.get("auto_activate", False),
        )
        return Response(RouterOutput(router).data, status=status.HTTP_201_CREATED)


class RouterDetailView(_RouterScoped):
    serializer_class = RouterOutput
    parser_classes = [JSONParser]

    @extend_schema(responses=RouterOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(RouterOutput(self.get_object()).data)

    @extend_schema(
        description=(
            "Change a router's settings; only the fields sent are written. A new `slug` is a "
            "409 naming the keys (prefix and name) whose `allowed_models` name "
            "`router/<current slug>` or a RouteLLM name of it (`router-<current slug>-<threshold>`"
            ", `-<P>%`) while any such key is not revoked, and the pipelines whose active version "
            "calls the router (a step's `router/<slug>` or `router_score` pre-gate): change or "
            "revoke the keys, give the pipelines a version without it, first (renamed, the router "
            "would be refused to them, and a router made later with the old slug served to them)."
        ),
        request=RouterInput,
        responses=RouterOutput,
    )
    def patch(self, request: Request, slug: str) -> Response:
        router = self.get_object()
        data = RouterInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        router = services.router_update(router=router, changes=dict(data.validated_data))
        return Response(RouterOutput(router).data)

    @extend_schema(
        description=(
            "Delete a router, its versions and their files. A 409 while it has a queued or "
            "running training run, or while keys not revoked name it in their `allowed_models` "
            "(`router/<slug>`, `router-<slug>-<threshold>`, `-<P>%`), or while pipelines' "
            "active versions call it (a step's `router/<slug>` or `router_score` pre-gate): a "
            "router made later with this slug would be theirs. Change them first."
        ),
        responses={
            204: None,
            409: OpenApiResponse(
                description="A training run is in progress, or keys or pipelines name the router "
                "(`error.param`: slug; `error.metadata.keys`: `[{prefix, name}]`, "
                "`error.metadata.pipelines`: `[{slug, name}]`, at most 10 each)."
            ),
        },
    )
    def delete(self, request: Request, slug: str) -> Response:
        services.router_delete(router=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RouterTrainView(_RouterScoped):
    serializer_class = TrainingRunOutput
    parser_classes = [JSONParser]

    @extend_schema(
        request=TrainInput,
        responses={
            202: TrainingRunOutput,
            409: OpenApiResponse(
                description="The router already has a queued or running run "
                "(`error.metadata.run` is its id, `error.metadata.status` its status), or the "
                "organization has TRAINING_MAX_ACTIVE_RUNS_PER_ORGANIZATION runs queued or "
                "running (`error.metadata.runs`, `error.metadata.limit`)."
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        router = self.get_object()
        data = TrainInput(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = Dataset.objects.filter(
            organization=self.organization, pk=data.validated_data["dataset"]
        ).first()
        if dataset is None:
            raise BadRequest("dataset is not one of your datasets.", param="dataset")
        run = services.training_run_start(
            router=router, dataset=dataset, options=dict(data.validated_data["options"])
        )
        return Response(TrainingRunOutput(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailView(TenantAPIView):
    tenant_model = TrainingRun
    required_roles = ADMIN_WRITES
    serializer_class = TrainingRunOutput
    lookup_url_kwarg = "run_id"
    lookup_field = "pk"

    def scope_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.select_related("router", "version")

    @extend_schema(responses=TrainingRunOutput)
    def get(self, request: Request, run_id: int) -> Response:
        return Response(TrainingRunOutput(self.get_object()).data)


class TrainingRunCancelView(TrainingRunDetailView):
    @extend_schema(request=None, responses=TrainingRunOutput)
    def post(self, request: Request, run_id: int) -> Response:
        run = services.training_run_cancel(run=self.get_object())
        return Response(TrainingRunOutput(run).data)


def _version(router: Router, number: int) -> RouterVersion:
    version = router.versions.filter(number=number).select_related("router").first()
    if version is None:
        raise NotFound(f"Router '{router.slug}' has no version {number}.")
    return version


class RouterVersionListView(_RouterScoped):
    serializer_class = RouterVersionOutput

    @extend_schema(responses=RouterVersionOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        router = self.get_object()
        versions = router.versions.select_related("router").order_by("-number")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(RouterVersionOutput(page, many=True).data)


class RouterVersionActivateView(_RouterScoped):
    serializer_class = RouterOutput

    @extend_schema(request=None, responses=RouterOutput)
    def post(self, request: Request, slug: str, number: int) -> Response:
        router = lifecycle.version_switch(
            router=self.get_object(),
            number=number,
            kind=RouterEventKind.ACTIVATED,
            actor=api_actor(self),
        )
        return Response(RouterOutput(router).data)


class RouterVersionReportView(_RouterScoped):
    serializer_class = RouterVersionOutput

    @extend_schema(responses={200: dict})
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = _version(self.get_object(), number)
        return Response({"router": slug, "version": version.number, **version.report})


class RouterDriftView(_RouterScoped):
    """The router's drift checks, newest first (training/drift.py explains the score)."""

    serializer_class = RouterDriftCheckOutput

    @extend_schema(responses=RouterDriftCheckOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        checks = self.get_object().drift_checks.select_related("version").order_by("-checked_at")
        page = self.paginate_queryset(checks)
        return self.get_paginated_response(RouterDriftCheckOutput(page, many=True).data)
