"""``POST /api/v1/routers/{slug}/calibrate``: RouteLLM's ``calibrate_threshold`` for a router."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.tenant_api import TenantAPIView
from routerhub.errors import NotFound
from routing.routellm import routellm_calibrate
from training.serving import Router


class CalibrateInput(serializers.Serializer[Any]):
    strong_share = serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text="Share of traffic (0..1) to send to the strong model, e.g. 0.5.",
    )
    strong_model_pct = serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text="RouteLLM's name for strong_share (calibrate_threshold --strong-model-pct).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [attrs[n] for n in ("strong_share", "strong_model_pct") if n in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"strong_share": "Give strong_share (or RouteLLM's strong_model_pct), once."}
            )
        return {"strong_share": given[0]}


CalibrateOutput = inline_serializer(
    "Calibration",
    {
        "threshold": serializers.FloatField(),
        "model": serializers.CharField(help_text="router-<slug>-<threshold>, ready to call"),
        "share_model": serializers.CharField(
            help_text="router-<slug>-<P>%: the same share, recalibrated on each new version"
        ),
        "strong_share": serializers.FloatField(),
        "achieved_share": serializers.FloatField(),
        "strong_model": serializers.CharField(),
        "weak_model": serializers.CharField(),
        "prompts": serializers.IntegerField(),
        "version": serializers.IntegerField(),
    },
)


def _percent(share: float) -> str:
    """``share`` as a percentage with every digit of its shortest decimal form (0.123456789 is
    12.3456789), plain notation, no trailing zeros: RouteLLM's percentage name reads back the
    same share."""
    text = format(Decimal(repr(share)) * 100, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class RouterCalibrateView(TenantAPIView):
    """The strong-win-rate threshold that sends a share of the router's data to its strong model."""

    tenant_model = Router
    inference_key_allowed = True

    @extend_schema(request=CalibrateInput, responses=CalibrateOutput)
    def post(self, request: Request, slug: str) -> Response:
        router = self.get_queryset().filter(slug=slug).select_related("active_version").first()
        if router is None:
            raise NotFound(f"No router '{slug}' in this organization.", param="slug")
        if router.active_version is None:
            raise NotFound(
                f"Router '{slug}' has no trained version yet; train it with "
                f"POST /api/v1/routers/{slug}/train.",
                param="slug",
            )
        data = CalibrateInput(data=request.data)
        data.is_valid(raise_exception=True)
        share: float = data.validated_data["strong_share"]
        answer = routellm_calibrate(version=router.active_version, strong_share=share)
        percent = _percent(share)
        return Response(
            {
                "model": f"router-{slug}-{answer['threshold']}",
                "share_model": f"router-{slug}-{percent}%",
                **answer,
            }
        )
