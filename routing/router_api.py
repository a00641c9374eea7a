"""``POST /api/v1/routers/{slug}/select``: Not Diamond's model-select — the ranking, no upstream call.

Calls with an API key and a JSON body are answered by the gateway's lean app with this view's
pieces, in its order (``routing.gateway.model_select``); this view serves the rest (dashboard
sessions, form bodies) and documents the endpoint in the OpenAPI schema.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.errors import NotFound
from routing.feedback import feedback_retrain
from routing.gateway.catalog_cache import catalog_get
from routing.gateway.select_limits import select_admit_sync
from routing.lifecycle_report import experiment_report_json
from routing.router_request import models_allowed_check, select_prompt
from routing.routers import (
    PLATFORM_ROUTER_SLUG,
    router_candidates_allowed,
    router_decide,
    router_row,
    tradeoff_parse,
)
from routing.serializers import SelectInput
from training.serving import Router

SelectOutput = inline_serializer(
    "Selection",
    {
        "chosen": serializers.CharField(),
        "version": serializers.IntegerField(allow_null=True),
        "ranked": serializers.ListField(child=serializers.DictField()),
        "latency_ms": serializers.FloatField(),
        "strategy": serializers.CharField(),
        "task_hint": serializers.DictField(
            required=False,
            help_text="when the request named a task: {task, applied, reason}; applied is the "
            "task label the version decided with (the task's own or its parent's), null when it "
            "has none for it or the tradeoff is not 0 (hints apply at tradeoff 0 only), with "
            "reason saying which (then also the header x-routerhub-dropped: task)",
        ),
    },
)

RetrainOutput = inline_serializer(
    "FeedbackRetrain",
    {
        "id": serializers.IntegerField(),
        "status": serializers.CharField(),
        "dataset": serializers.IntegerField(),
        "feedback_rows": serializers.IntegerField(),
        "warnings": serializers.ListField(child=serializers.CharField()),
    },
)


class RouterSelectView(TenantAPIView):
    tenant_model = Router
    inference_key_allowed = True

    @extend_schema(request=SelectInput, responses=SelectOutput)
    def post(self, request: Request, slug: str) -> Response:
        select_admit_sync(self.tenant.key, user_id=request.user.pk)  # apart from the key's rpm
        platform = slug == PLATFORM_ROUTER_SLUG
        if not platform and not self.get_queryset().filter(slug=slug).exists():
            raise NotFound(f"No router '{slug}' in this organization.", param="slug")
        data = SelectInput(data=request.data)
        data.is_valid(raise_exception=True)
        body = data.validated_data
        prompt = select_prompt(body)
        allowed = self.tenant.key.allowed_models if self.tenant.key else ()
        row = router_row(None if platform else self.organization.pk, slug)
        own = router_candidates_allowed(allowed, f"router/{slug}", row)
        named = (("candidates", c) for c in body.get("candidates") or ())
        models_allowed_check(allowed, named, router_candidates=own)
        decision = router_decide(
            organization_id=self.organization.pk,
            model_id=f"router/{slug}",
            prompt=prompt,
            tradeoff=tradeoff_parse(body.get("tradeoff"), param="tradeoff"),
            candidates=body.get("candidates"),
            catalog=async_to_sync(catalog_get)(),
            row=row,
            task=body.get("task"),
        )
        answer, headers = decision.as_selection()
        return Response(answer, headers=headers)


class RouterFeedbackRetrainView(TenantAPIView):
    """``POST /api/v1/routers/{slug}/retrain-from-feedback``: one click from feedback to a run.

    Answers at once with the queued run (stage ``building_dataset``), its dataset (``validating``
    until a worker has built it) and the feedback rows it will use; 409 naming the run while the
    router has one queued or running."""

    tenant_model = Router
    required_roles = {"POST": Role.ADMIN}

    @extend_schema(
        request=None,
        responses={202: RetrainOutput},
        description=(
            "Queues a retrain: the run is `queued` at stage `building_dataset` and the dataset "
            "`validating` until a worker has built it from the newest feedback (at most "
            "FEEDBACK_RETRAIN_MAX_ROWS, counted in `feedback_rows`). A dataset that does not "
            "validate ends the run `failed` and the dataset `invalid` with the reason (this was "
            "a 400 when the request built it). The active version's training options are reused "
            "where they still hold for the router's candidates; one that no longer does (prices "
            "missing a candidate, a held-out dataset not ready or not scoring them all) is left "
            "out and named in `warnings` (the dataset's warnings too). 409 while the router has "
            "a run queued or running (`metadata.run`)."
        ),
    )
    def post(self, request: Request, slug: str) -> Response:
        router = self.get_queryset().filter(slug=slug).select_related("active_version").first()
        if router is None:
            raise NotFound(f"No router '{slug}' in this organization.", param="slug")
        started = feedback_retrain(router=router)
        return Response(
            {
                "id": started.run.pk,
                "status": started.run.status,
                "dataset": started.dataset.pk,
                "feedback_rows": started.feedback_rows,
                "warnings": started.dataset.warnings,
            },
            status=202,
        )


class RouterExperimentView(TenantAPIView):
    """The live report of the router's shadow or A/B experiment (README "Router lifecycle")."""

    tenant_model = Router

    @extend_schema(responses={200: dict})
    def get(self, request: Request, slug: str) -> Response:
        routers = self.get_queryset().select_related(
            "active_version", "shadow_version", "challenger_version"
        )
        router = routers.filter(slug=slug).first()
        if router is None:
            raise NotFound(f"No router '{slug}' in this organization.", param="slug")
        return Response(experiment_report_json(router))
