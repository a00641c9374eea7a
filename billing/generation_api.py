"""``GET /api/v1/generation?id=gen-…``: one request's usage record, with its routing decision's
task hint, OpenRouter's ``data`` envelope and a pipeline's child records."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.key_lineage import key_answers_for
from accounts.tenant_api import TenantAPIView
from billing.models import UsageFlag, UsageRecord, UsageStep
from billing.openrouter_shapes import GenerationData, generation_data
from billing.selectors import generation_missing
from routerhub.errors import BadRequest
from routerhub.money import money_str


def _int_or_null() -> serializers.IntegerField:
    return serializers.IntegerField(allow_null=True)


def _generation_fields() -> dict[str, serializers.Field[Any, Any, Any, Any]]:
    """The record's fields, fresh instances each call: DRF's serializer metaclass pops declared
    fields out of the dict it is given, so two serializers cannot share one."""
    return {
        "id": serializers.CharField(),
        "model": serializers.CharField(),
        "requested_model": serializers.CharField(),
        "provider": serializers.CharField(),
        "router": serializers.CharField(allow_null=True),
        "router_version": _int_or_null(),
        "task_hint": inline_serializer(
            "GenerationTaskHint",
            {
                "task": serializers.CharField(),
                "applied": serializers.CharField(allow_null=True),
                "reason": serializers.CharField(allow_null=True),
            },
            allow_null=True,
            help_text="The task the request named (router.task), as its routing decision used "
            "it: applied is the label decided with (the task, or its parent), null with the "
            "reason when it was decided without; null when the request named no task.",
        ),
        "prompt_tokens": serializers.IntegerField(),
        "completion_tokens": serializers.IntegerField(),
        "cached_tokens": serializers.IntegerField(help_text="Prompt tokens read from a cache."),
        "cache_write_tokens": serializers.IntegerField(
            help_text="Prompt tokens written to the provider's prompt cache (Anthropic's "
            "cache_creation_input_tokens; part of prompt_tokens, priced at 1.25x/2x input)."
        ),
        "reasoning_tokens": serializers.IntegerField(),
        "cost": serializers.CharField(),
        "latency_ms": _int_or_null(),
        "ttft_ms": _int_or_null(),
        "status": serializers.CharField(),
        "error_type": serializers.CharField(allow_null=True),
        "streamed": serializers.BooleanField(),
        "is_byok": serializers.BooleanField(),
        "flags": serializers.ListField(
            child=serializers.ChoiceField(choices=UsageFlag.choices),
            help_text="Billing that needs a look: over_hold (charged more than its hold), "
            "shortfall (the balance ran out; cost is what was charged), usage_clamped "
            "(the provider reported impossible usage; billed on an estimate), "
            "usage_estimated (the provider reported none), reconciled_from_hold (the request's "
            "usage never reached billing; charged its hold, the request's worst case), "
            "unpriced_tier (the provider said it served a service tier the catalog does not "
            "price, on RouterHub's keys; billed the standard price).",
        ),
        "key_id": _int_or_null(),
        "created_at": serializers.DateTimeField(),
        "steps": serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text="Only for a pipeline request: one child record per provider call "
            "{step, model, provider, status, gate, prompt_tokens, completion_tokens, cost, "
            "latency_ms}; their costs sum to cost.",
        ),
    }


GenerationEnvelopedOutput = inline_serializer(
    "GenerationWithOpenRouterData", _generation_fields() | {"data": GenerationData}
)


def _task_hint(record: UsageRecord) -> dict[str, Any] | None:
    """The request's task hint as its routing decision answered it (``{task, applied, reason}``,
    kept in the record's trace), or None when it named no task."""
    hint = (record.trace_data.get("routing") or {}).get("task_hint")
    return hint if isinstance(hint, dict) else None


def generation_json(record: UsageRecord) -> dict[str, Any]:
    return {
        "id": record.generation_id,
        "model": record.model,
        "requested_model": record.requested_model,
        "provider": record.provider,
        "router": record.router or None,
        "router_version": record.router_version,
        "task_hint": _task_hint(record),
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost": money_str(record.cost),
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "status": record.status,
        "error_type": record.error_type or None,
        "streamed": record.streamed,
        "is_byok": record.is_byok,
        "flags": record.flag_list,
        "key_id": record.key_id,
        "created_at": record.created_at.isoformat(),
    }


class GenerationView(TenantAPIView):
    """``GET /api/v1/generation?id=gen-…``: one request's record. An inference key reads only
    the requests it (or a key it made) sent: another's id is a 404, as another organization's."""

    tenant_model = UsageRecord
    inference_key_allowed = True

    @extend_schema(
        description=(
            "One request's record. An inference key reads only requests it sent, or a key it "
            "made sent; any other id is a 404 (as another organization's). Management keys and "
            "sessions read every request of the organization."
        ),
        parameters=[OpenApiParameter("id", str, required=True)],
        responses=GenerationEnvelopedOutput,
    )
    def get(self, request: Request) -> Response:
        generation_id = request.query_params.get("id")
        if not generation_id:
            raise BadRequest("Pass the generation id: ?id=gen-…", param="id")
        record = self.get_queryset().filter(generation_id=generation_id).first()
        served_by = self.served_by()
        if record is not None and served_by is not None:
            record = record if key_answers_for(served_by, record.key_id) else None
        if record is None:
            raise generation_missing(
                organization_id=self.organization.pk,
                generation_id=generation_id,
                param="id",
                served_by=served_by,
            )
        answer = generation_json(record) | {"data": generation_data(record)}
        steps = UsageStep.objects.filter(generation_id=record.generation_id)
        if steps:
            answer["steps"] = [_step_json(s) for s in steps]
        return Response(answer)


def _step_json(step: UsageStep) -> dict[str, Any]:
    """One provider call of a pipeline request (a child record of its generation)."""
    return {
        "step": step.step,
        "model": step.model,
        "provider": step.provider,
        "status": step.status,
        "gate": step.gate,
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "cost": money_str(step.cost),
        "latency_ms": step.latency_ms,
    }
