"""``/api/v1/routers/{slug}/lifecycle``, ``…/rollback`` and ``…/events``: a router's experiment
settings, its one-call rollback and its audit log (members read, admins write)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from training import lifecycle
from training.api import _RouterScoped, api_actor
from training.models import Promotion, Router, RouterEvent
from training.serializers import RouterOutput


class LifecycleInput(serializers.Serializer[Any]):
    shadow_version = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    shadow_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    challenger_version = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    challenger_share = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    exploration_rate = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    promotion = serializers.ChoiceField(choices=Promotion.choices, required=False)
    promotion_min_decisions = serializers.IntegerField(
        required=False, min_value=10, max_value=1_000_000
    )

    def validate_exploration_rate(self, value: float) -> float:
        if value > settings.ROUTER_EXPLORATION_MAX:
            raise serializers.ValidationError(
                f"At most {settings.ROUTER_EXPLORATION_MAX} (ROUTER_EXPLORATION_MAX)."
            )
        return value

    def validate_shadow_share(self, value: float) -> float:
        if value > settings.ROUTER_SHADOW_MAX_SHARE:
            raise serializers.ValidationError(
                f"At most {settings.ROUTER_SHADOW_MAX_SHARE} (ROUTER_SHADOW_MAX_SHARE)."
            )
        return value


class LifecycleOutput(serializers.ModelSerializer[Router]):
    shadow_version = serializers.SerializerMethodField()
    challenger_version = serializers.SerializerMethodField()
    active_version = serializers.SerializerMethodField()

    class Meta:
        model = Router
        fields = ["active_version", *lifecycle.LIFECYCLE_FIELDS]

    def _number(self, router: Router, field: str) -> int | None:
        version = getattr(router, field)
        return None if version is None else int(version.number)

    def get_shadow_version(self, router: Router) -> int | None:
        return self._number(router, "shadow_version")

    def get_challenger_version(self, router: Router) -> int | None:
        return self._number(router, "challenger_version")

    def get_active_version(self, router: Router) -> int | None:
        return self._number(router, "active_version")


class RouterEventOutput(serializers.ModelSerializer[RouterEvent]):
    class Meta:
        model = RouterEvent
        fields = ["id", "kind", "actor", "from_version", "to_version", "evidence", "created_at"]


class _LifecycleScoped(_RouterScoped):
    def scope_queryset(self, queryset: Any) -> Any:
        return queryset.select_related("active_version", "shadow_version", "challenger_version")


class RouterLifecycleView(_LifecycleScoped):
    serializer_class = LifecycleOutput
    parser_classes = [JSONParser]

    @extend_schema(responses=LifecycleOutput)
    def get(self, request: Request, slug: str) -> Response:
        return Response(LifecycleOutput(self.get_object()).data)

    @extend_schema(request=LifecycleInput, responses=LifecycleOutput)
    def patch(self, request: Request, slug: str) -> Response:
        data = LifecycleInput(data=request.data)
        data.is_valid(raise_exception=True)
        lifecycle.router_lifecycle_update(
            router=self.get_object(), changes=dict(data.validated_data), actor=api_actor(self)
        )
        return Response(LifecycleOutput(self.get_queryset().get(slug=slug)).data)


class RouterRollbackView(_LifecycleScoped):
    serializer_class = RouterOutput
    required_roles = {"POST": _RouterScoped.required_roles["POST"]}

    @extend_schema(request=None, responses=RouterOutput)
    def post(self, request: Request, slug: str) -> Response:
        router = lifecycle.router_rollback(router=self.get_object(), actor=api_actor(self))
        return Response(RouterOutput(router).data)


class RouterEventListView(_RouterScoped):
    serializer_class = RouterEventOutput

    @extend_schema(responses=RouterEventOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        events = RouterEvent.objects.filter(router=self.get_object()).order_by("-created_at", "-id")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(RouterEventOutput(page, many=True).data)
