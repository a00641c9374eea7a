"""The generation page: one request as the gateway saw it (from usage rows and the playground).

Tenant-isolated: a generation id of another organization answers 404, exactly like an id that
never existed. A request still being settled (its hold is open, its usage row not yet written)
shows a short "being recorded" page that refreshes itself.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.tenancy import dashboard_organization, organization_required
from billing.models import UsageRecord
from billing.selectors import generation_pending

_MAX_GENERATION_ID = 64


@organization_required()
def generation_page(request: HttpRequest, generation_id: str) -> HttpResponse:
    organization = dashboard_organization(request)
    generation_id = generation_id[:_MAX_GENERATION_ID]
    record = (
        UsageRecord.objects.for_tenant(organization)
        .filter(generation_id=generation_id)
        .select_related("key")
        .first()
    )
    if record is None:
        if not generation_pending(organization_id=organization.pk, generation_id=generation_id):
            raise Http404("No such generation in this organization.")
        return render(request, "billing/generation_pending.html", {"generation_id": generation_id})
    return render(request, "billing/generation.html", _context(record, organization.prompt_logging))


def _context(record: UsageRecord, prompt_logging: bool) -> dict[str, Any]:
    trace = record.trace_data
    routing = trace.get("routing") or None
    return {
        "r": record,
        "routing": routing,
        "fallbacks": trace.get("fallbacks") or [],
        "tokens_total": record.prompt_tokens + record.completion_tokens,
        "throughput": _tokens_per_second(record),
        "prompt_logging": prompt_logging,
    }


def _tokens_per_second(record: UsageRecord) -> float | None:
    """Completion tokens per second after the first byte (the whole request when unknown)."""
    if not record.completion_tokens or not record.latency_ms:
        return None
    generating_ms = record.latency_ms - (record.ttft_ms or 0)
    if generating_ms <= 0:
        generating_ms = record.latency_ms
    return round(record.completion_tokens * 1000 / generating_ms, 1)
