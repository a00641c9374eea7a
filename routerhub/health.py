"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routerhub.errors import error_json_response

# Longest Authorization header compared: anything longer is refused unread.
_AUTHORIZATION_MAX_CHARS = 1024


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    import redis

    redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()


def _check_broker() -> None:
    from routerhub.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def readiness_checks() -> dict[str, Callable[[], None]]:
    checks: dict[str, Callable[[], None]] = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        checks["broker"] = _check_broker
    return checks


def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every configured dependency answers, else 503 naming the ones that did not."""
    results: dict[str, dict[str, object]] = {}
    for name, check in readiness_checks().items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True}
        except Exception as exc:
            results[name] = {"ok": False, "error": type(exc).__name__}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    ready = all(r["ok"] for r in results.values())
    return JsonResponse({"ready": ready, "checks": results}, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of this process (no organization's data): behind ``METRICS_TOKEN``
    when it is set, else public only where ``METRICS_PUBLIC`` (not production's default)."""
    token = settings.METRICS_TOKEN
    if not token and not settings.METRICS_PUBLIC:
        return error_json_response(404, "not_found", "Not found.")
    if token and not _bearer_matches(request, token):
        response = error_json_response(
            401, "unauthorized", "Send the metrics token as 'Authorization: Bearer <token>'."
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    if len(header) > _AUTHORIZATION_MAX_CHARS:
        return False
    scheme, _, sent = header.partition(" ")
    # Constant time: how much of the token matched must not show in the response's timing.
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode())
