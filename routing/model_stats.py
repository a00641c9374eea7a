"""Measured performance per model and provider, from the platform's own usage records.

Over the last ``WINDOW`` (at most ``SAMPLE`` most recent requests, cached ``CACHE_SECONDS``):
median time to first token and total latency, median generation throughput (completion tokens
per second after the first token), and uptime = answers / (answers + provider failures), where
a failure is a request the provider failed (``status = failed`` with that provider) or a
fallback attempt it failed (the usage record's trace). Requests on an organization's own key
or host, and requests the client aborted, say nothing about the platform's endpoint and are
left out.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

from billing.models import UsageRecord, UsageStatus

WINDOW = timedelta(days=7)
SAMPLE = 20_000
CACHE_SECONDS = 60
_CACHE_KEY = "routing:model-stats:v1"


@dataclass
class _Tally:
    answers: int = 0
    failures: int = 0
    ttft: list[int] = field(default_factory=list)
    latency: list[int] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ProviderStats:
    model: str
    provider: str
    requests: int
    uptime_percent: float | None
    ttft_ms: int | None
    latency_ms: int | None
    tokens_per_second: float | None


def _median_int(values: list[int]) -> int | None:
    return round(statistics.median(values)) if values else None


def _tally(
    rows: list[tuple[str, str, str, int | None, int | None, int, str]],
) -> dict[tuple[str, str], _Tally]:
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    for model, provider, status, latency, ttft, completion, trace in rows:
        if trace:
            for attempt in json.loads(trace).get("fallbacks") or []:
                tallies[(attempt.get("model", ""), attempt.get("provider", ""))].failures += 1
        if not provider:
            continue
        tally = tallies[(model, provider)]
        if status == UsageStatus.FAILED:
            tally.failures += 1
            continue
        tally.answers += 1
        if latency is not None:
            tally.latency.append(latency)
        if ttft is not None:
            tally.ttft.append(ttft)
        generating = (latency or 0) - (ttft or 0)
        if completion and generating > 0:
            tally.throughput.append(completion * 1000 / generating)
    return tallies


def provider_stats() -> list[ProviderStats]:
    """Every (model, provider) pair with requests in the window, most requests first."""
    cached: list[ProviderStats] | None = cache.get(_CACHE_KEY)
    if cached is not None:
        return cached
    rows = list(
        UsageRecord.objects.filter(created_at__gte=timezone.now() - WINDOW, is_byok=False)
        .exclude(status=UsageStatus.ABORTED)
        .order_by("-created_at")
        .values_list(
            "model", "provider", "status", "latency_ms", "ttft_ms", "completion_tokens", "trace"
        )[:SAMPLE]
    )
    stats = []
    for (model, provider), t in _tally(rows).items():
        total = t.answers + t.failures
        stats.append(
            ProviderStats(
                model=model,
                provider=provider,
                requests=total,
                uptime_percent=round(100 * t.answers / total, 1) if total else None,
                ttft_ms=_median_int(t.ttft),
                latency_ms=_median_int(t.latency),
                tokens_per_second=round(statistics.median(t.throughput), 1)
                if t.throughput
                else None,
            )
        )
    stats.sort(key=lambda s: (-s.requests, s.model, s.provider))
    cache.set(_CACHE_KEY, stats, CACHE_SECONDS)
    return stats
