"""Not Diamond's endpoints under ``/api/notdiamond/v2/...`` (point their SDK's API URL here).

Shapes follow Not Diamond's Python SDK (``notdiamond`` 0.4): ``modelSelect`` answers
``{providers: [{provider, model}], session_id}``, feedback ``{session_id, provider, feedback}``,
latency ``{session_id, provider, tokens_per_second}``,
``userPreferenceCreate`` and ``trainCustomRouter`` ``{preference_id}``. Authentication is a
RouterHub API key as the bearer token: inference keys may select and report feedback, creating and
training routers needs a management key of an admin (as ``/api/v1/routers`` does).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Role
from accounts.tenant_api import TenantAPIView
from routerhub.errors import BadRequest
from routerhub.parsers import JSONParser
from routing import notdiamond
from routing.gateway.select_limits import select_admit_sync
from routing.models import SelectionSession
from training.serving import Router


def _provider() -> serializers.DictField:
    return serializers.DictField(child=serializers.CharField(), help_text="{provider, model}")


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise BadRequest("The body must be a JSON object.")
    return dict(request.data)


def _form(request: Request) -> dict[str, Any]:
    """The multipart fields, one value each (the last, as Django's ``QueryDict`` gives)."""
    data = request.data
    if not isinstance(data, dict):
        raise BadRequest("Send the fields as multipart/form-data.")
    return {str(k): data.get(k) for k in data if k != "dataset_file"}


class ModelSelectView(TenantAPIView):
    """Not Diamond's model select: rank ``llm_providers`` with the router ``preference_id``."""

    tenant_model = SelectionSession
    inference_key_allowed = True
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="notdiamond_model_select",
        request=inline_serializer(
            "NotDiamondModelSelect",
            {
                "messages": serializers.ListField(child=serializers.DictField()),
                "llm_providers": serializers.ListField(child=_provider()),
                "tradeoff": serializers.ChoiceField(["cost", "latency"], required=False),
                "preference_id": serializers.CharField(required=False, help_text="router slug"),
                "max_model_depth": serializers.IntegerField(required=False, min_value=1),
                "tools": serializers.ListField(
                    child=serializers.DictField(),
                    required=False,
                    help_text="only models that can call tools are ranked",
                ),
                "hash_content": serializers.BooleanField(
                    required=False, help_text="true: the prompt is never stored"
                ),
            },
        ),
        responses=inline_serializer(
            "NotDiamondSelection",
            {
                "providers": serializers.ListField(child=_provider()),
                "session_id": serializers.UUIDField(),
            },
        ),
    )
    def post(self, request: Request) -> Response:
        key = self.tenant.key
        # Each select stores a session: bounded per key (or person), apart from the key's rpm.
        select_admit_sync(key, user_id=request.user.pk)
        return Response(
            notdiamond.model_select(
                organization=self.organization,
                body=_body(request),
                allowed_models=key.allowed_models if key else (),
                key_id=key.id if key else None,
            )
        )


class _SessionReportView(TenantAPIView):
    """A report on a model-select session: an inference key reports only on sessions it or a
    key it made selected (another is a 404, as an unknown id); management keys and people on
    any of the organization's."""

    tenant_model = SelectionSession
    inference_key_allowed = True
    parser_classes = [JSONParser]


def _report(name: str, feedback_child: serializers.Field[Any, Any, Any, Any], example: str) -> Any:
    return inline_serializer(
        name,
        {
            "session_id": serializers.UUIDField(),
            "provider": _provider(),
            "feedback": serializers.DictField(child=feedback_child, help_text=example),
        },
    )


_REPORT_RULE = (
    "An inference key reports only on sessions it or a key it made selected (as "
    "`POST /api/v1/feedback` rates only such keys' requests): another key's session is a 404 "
    "like an unknown one, naming the key to use (the one that selected, or a management key). "
    "Management keys and signed-in people report on any session of the organization."
)


def _report_responses(ok: Any, value: str) -> dict[int, Any]:
    """A report's success and the errors it answers (``{"error": …}``, ``routerhub.schema``)."""
    return {
        200: ok,
        400: OpenApiResponse(
            description="`session_id` is not the id modelSelect returned, `provider` is not a "
            f"model the session ranked, or `feedback` is not {value} (`error.param` names it)."
        ),
        404: OpenApiResponse(
            description="No such session in the organization, or (an inference key) one that "
            "neither this key nor a key it made selected: worded alike, naming the key to use "
            "(`error.param`: session_id)."
        ),
    }


class FeedbackView(_SessionReportView):
    """Not Diamond's feedback: ``{metric: 0|1}`` for the model a model-select session chose."""

    @extend_schema(
        operation_id="notdiamond_feedback",
        description=f"{_REPORT_RULE} An inference key does not replace feedback a person or a "
        "management key gave on the session (409, as `POST /api/v1/feedback`).",
        request=_report("NotDiamondFeedback", serializers.IntegerField(), '{"accuracy": 0|1}'),
        responses=_report_responses(
            inline_serializer(
                "NotDiamondFeedbackRecorded",
                {
                    "session_id": serializers.UUIDField(),
                    "provider": serializers.CharField(),
                    "feedback": serializers.DictField(),
                },
            ),
            "`{metric: 0|1}`",
        )
        | {
            409: OpenApiResponse(
                description="An inference key's report on a session whose feedback a person "
                "or a management key gave (`error.param`: session_id)."
            )
        },
    )
    def post(self, request: Request) -> Response:
        return Response(
            notdiamond.feedback_record(
                organization=self.organization,
                body=_body(request),
                served_by=self.served_by(),
                key_id=self.acting_key_id(),
            )
        )


class LatencyView(_SessionReportView):
    """Not Diamond's latency report: the SDK's measured tokens per second of a session's call."""

    @extend_schema(
        operation_id="notdiamond_latency",
        description=_REPORT_RULE,
        request=_report(
            "NotDiamondLatency", serializers.FloatField(), '{"tokens_per_second": 42.0}'
        ),
        responses=_report_responses(
            inline_serializer(
                "NotDiamondLatencyRecorded",
                {
                    "session_id": serializers.UUIDField(),
                    "provider": serializers.CharField(),
                    "tokens_per_second": serializers.FloatField(),
                },
            ),
            "`{tokens_per_second: x}` with x a finite number ≥ 0",
        )
        | {
            409: OpenApiResponse(
                description="The session already has a different latency report: a session is "
                "one call, reported once (the same report again is a 200; `error.param`: "
                "session_id)."
            )
        },
    )
    def post(self, request: Request) -> Response:
        return Response(
            notdiamond.latency_record(
                organization=self.organization, body=_body(request), served_by=self.served_by()
            )
        )


_PREFERENCE = inline_serializer("NotDiamondPreference", {"preference_id": serializers.CharField()})


class PreferenceCreateView(TenantAPIView):
    """Not Diamond's preference id: a new, untrained router whose slug is the id."""

    tenant_model = Router
    required_roles = {"POST": Role.ADMIN}
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="notdiamond_preference_create",
        request=inline_serializer(
            "NotDiamondPreferenceCreate",
            {"name": serializers.CharField(required=False, allow_null=True)},
        ),
        responses=_PREFERENCE,
    )
    def post(self, request: Request) -> Response:
        name = _body(request).get("name")
        return Response(notdiamond.preference_create(organization=self.organization, name=name))


class TrainCustomRouterView(TenantAPIView):
    """Not Diamond's ``CustomRouter.fit``: the joint CSV becomes a dataset and a training run."""

    tenant_model = Router
    required_roles = {"POST": Role.ADMIN}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        operation_id="notdiamond_train_custom_router",
        request={
            "multipart/form-data": inline_serializer(
                "NotDiamondTrain",
                {
                    "dataset_file": serializers.FileField(),
                    "llm_providers": serializers.CharField(
                        help_text="JSON list of {provider, model, input_price?, output_price?} (prices in "
                        "USD per million tokens, 0 to 1e6; used as the run's options.prices when "
                        "every entry declares both)"
                    ),
                    "prompt_column": serializers.CharField(),
                    "maximize": serializers.BooleanField(required=False),
                    "language": serializers.CharField(required=False, help_text="ignored"),
                    "preference_id": serializers.CharField(required=False, help_text="router slug"),
                },
            )
        },
        responses=inline_serializer(
            "NotDiamondTraining",
            {
                "preference_id": serializers.CharField(),
                "training_run": serializers.IntegerField(),
                "prices_missing": serializers.ListField(
                    child=serializers.CharField(),
                    required=False,
                    help_text="llm_providers without prices when others declared them: the "
                    "run uses rank costs",
                ),
            },
        ),
    )
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("dataset_file")
        if upload is None:
            raise BadRequest("dataset_file is required (the joint CSV).", param="dataset_file")
        router, run, unpriced = notdiamond.custom_router_train(
            organization=self.organization, upload=upload, form=_form(request)
        )
        answer: dict[str, Any] = {"preference_id": router.slug, "training_run": run.pk}
        if unpriced:  # some declared prices, not all: trained on rank costs, said so
            answer["prices_missing"] = unpriced
        return Response(answer)
