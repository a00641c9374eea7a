"""Per-endpoint health measured from real traffic: a circuit breaker and latency/throughput EWMAs.

In-process (each worker learns on its own within a few requests); ``sort: latency`` and
``sort: throughput`` read the EWMAs, and the request path skips endpoints whose breaker is open.
"""

from __future__ import annotations

import time
from collections import deque

from django.conf import settings

_ALPHA = 0.2  # EWMA weight of the newest sample
DEFAULT_TTFT_MS = 1000.0  # prior for an endpoint with no traffic yet: neither first nor last
DEFAULT_TOKENS_PER_SECOND = 50.0

_failures: dict[int, deque[float]] = {}
_open_until: dict[int, float] = {}
_ttft_ms: dict[int, float] = {}
_tokens_per_second: dict[int, float] = {}


def health_reset() -> None:
    for table in (_failures, _open_until, _ttft_ms, _tokens_per_second):
        table.clear()


def breaker_open_for(endpoint_id: int) -> float:
    """Seconds until the endpoint may be tried again (0 when its breaker is closed)."""
    until = _open_until.get(endpoint_id)
    if until is None:
        return 0.0
    remaining = until - time.monotonic()
    if remaining <= 0:
        del _open_until[endpoint_id]  # half-open: the next request is the trial
        return 0.0
    return remaining


def health_record_failure(endpoint_id: int) -> None:
    now = time.monotonic()
    window = _failures.setdefault(endpoint_id, deque(maxlen=64))
    window.append(now)
    while window and window[0] < now - settings.GATEWAY_BREAKER_WINDOW:
        window.popleft()
    if len(window) >= settings.GATEWAY_BREAKER_FAILURES:
        _open_until[endpoint_id] = now + settings.GATEWAY_BREAKER_COOLDOWN
        window.clear()


def _ewma(table: dict[int, float], key: int, sample: float) -> None:
    previous = table.get(key)
    table[key] = sample if previous is None else previous + _ALPHA * (sample - previous)


def health_record_success(
    endpoint_id: int, *, ttft_ms: float, completion_tokens: int, duration_s: float
) -> None:
    _failures.pop(endpoint_id, None)
    _ewma(_ttft_ms, endpoint_id, ttft_ms)
    generating = duration_s - ttft_ms / 1000
    if completion_tokens > 1 and generating > 0.001:
        _ewma(_tokens_per_second, endpoint_id, completion_tokens / generating)


def latency_ms(endpoint_id: int) -> float:
    return _ttft_ms.get(endpoint_id, DEFAULT_TTFT_MS)


def throughput(endpoint_id: int) -> float:
    return _tokens_per_second.get(endpoint_id, DEFAULT_TOKENS_PER_SECOND)
