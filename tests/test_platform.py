"""Platform plumbing: health, readiness, request ids, error format, OpenAPI schema, settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from tests.conftest import require_redis

ROOT = Path(__file__).resolve().parents[1]


def test_healthz_answers_with_a_request_id(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="req-12345678")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-Id"] == "req-12345678"


def test_unsafe_request_ids_are_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="<script>")

    assert response["X-Request-Id"] != "<script>" and len(response["X-Request-Id"]) == 32


@pytest.mark.django_db
def test_readyz_checks_the_database(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_readyz_checks_redis_when_configured(client):
    require_redis()

    body = client.get("/readyz").json()

    assert body["checks"]["redis"]["ok"] is True


@pytest.mark.django_db
def test_readyz_reports_an_unreachable_redis(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


def test_unknown_api_route_is_a_json_404(client):
    response = client.get("/api/v1/does-not-exist")

    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "code": 404,
        "type": "not_found",
        "message": "No route matches GET /api/v1/does-not-exist.",
        "param": None,
        "metadata": {},
    }


@pytest.mark.django_db
def test_openapi_schema_is_valid_openapi_3(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/keys" in schema["paths"] and "/api/v1/key" in schema["paths"]
    # How to authenticate is in the schema, so generated clients send the key.
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == schemes["apiKey"] | {"type": "http", "scheme": "bearer"}
    assert schemes["session"]["in"] == "cookie"
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/") and path != "/api/v1/billing/stripe/webhook"
    ]
    unsecured = [
        f"{method} {path}"
        for path, method, operation in operations
        if {"apiKey": []} not in operation.get("security", [])
    ]
    assert operations and not unsecured, unsecured


@pytest.mark.django_db
def test_api_docs_use_only_local_assets(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "https://" not in html.replace("https://swagger.io", "")


def _boot(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SECRET_KEY", "API_KEY_PEPPER"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "routerhub.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_boot_without_a_secret_key(tmp_path):
    result = _boot({"ROUTERHUB_ENV": "production", "ROUTERHUB_VAR_DIR": str(tmp_path)})

    assert result.returncode != 0
    assert "SECRET_KEY must be set when ROUTERHUB_ENV=production" in result.stderr


def test_bad_setting_values_fail_fast(tmp_path):
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "TOPUP_FEE_RATE": "five percent"})

    assert result.returncode != 0
    assert "TOPUP_FEE_RATE must be a decimal number" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FEEDBACK_RETRAIN_MAX_ROWS", "0", "FEEDBACK_RETRAIN_MAX_ROWS must be at least 1, not 0"),
        ("FEEDBACK_RETRAIN_TIME_LIMIT", "-5", "FEEDBACK_RETRAIN_TIME_LIMIT must be at least 1"),
        (
            "FEEDBACK_RETRAIN_DEADLINE_SECONDS",
            "6h",
            "FEEDBACK_RETRAIN_DEADLINE_SECONDS must be a whole number, not '6h'",
        ),
    ],
)
def test_feedback_retrain_settings_below_one_or_not_numbers_fail_fast(
    tmp_path, name, value, message
):
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), name: value})

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REDIS_CONNECT_TIMEOUT", "0", "REDIS_CONNECT_TIMEOUT must be more than 0"),
        ("REDIS_SOCKET_TIMEOUT", "-1", "REDIS_SOCKET_TIMEOUT must not be negative, not -1"),
        ("REDIS_SOCKET_TIMEOUT", "5s", "REDIS_SOCKET_TIMEOUT must be a number, not '5s'"),
        ("REDIS_SOCKET_TIMEOUT", "nan", "REDIS_SOCKET_TIMEOUT must be a number, not 'nan'"),
        ("REDIS_CONNECT_TIMEOUT", "inf", "REDIS_CONNECT_TIMEOUT must be a number, not 'inf'"),
        ("RATE_LIMIT_REDIS_BACKOFF_SECONDS", "0", "RATE_LIMIT_REDIS_BACKOFF_SECONDS must be more"),
        ("RATE_LIMIT_REDIS_BACKOFF_SECONDS", "inf", "BACKOFF_SECONDS must be a number, not 'inf'"),
        ("RATE_LIMIT_REDIS_BACKOFF_SECONDS", "nan", "BACKOFF_SECONDS must be a number, not 'nan'"),
    ],
)
def test_redis_timeouts_that_are_not_positive_numbers_fail_fast(tmp_path, name, value, message):
    """0 would mean a client that never waits; the defaults bound every Redis client's waits."""
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), name: value})

    assert result.returncode != 0
    assert message in result.stderr


def test_unknown_environment_name_fails_fast(tmp_path):
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "ROUTERHUB_ENV": "prod"})

    assert result.returncode != 0
    assert "ROUTERHUB_ENV must be development, test or production" in result.stderr


@pytest.mark.django_db
def test_docs_page_explains_the_api_and_links_the_reference(client):
    from tests.factories import organization_make, user_make

    user = user_make()
    organization_make(user)
    client.force_login(user)

    html = client.get("/dashboard/docs/").content.decode()

    assert 'href="/api/docs/"' in html
    assert "/v1/chat/completions" in html and "router/&lt;slug&gt;" in html


def test_a_mistyped_boolean_fails_fast(tmp_path):
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "DEBUG": "nope"})

    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr


@pytest.mark.django_db
def test_probes_answer_whatever_the_host_header(client, settings):
    settings.ALLOWED_HOSTS = ["routerhub.example.com"]

    health = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    ready = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    other = client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000")

    assert (health.status_code, ready.status_code) == (200, 200)
    assert other.status_code == 400


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-inf"])
def test_non_finite_decimal_settings_fail_fast_naming_the_setting(tmp_path, value):
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "TOPUP_FEE_RATE": value})

    assert result.returncode != 0
    assert f"TOPUP_FEE_RATE must be a decimal number, not {value!r}" in result.stderr


_REDIS_BROKER = "redis://127.0.0.1:6380/15"
_LIMITS_AND_VISIBILITY = """
import django; django.setup()
from routerhub.celery import app
app.loader.import_default_modules()
limits = [t.time_limit for t in app.tasks.values() if t.time_limit]
print(max(limits), app.conf.broker_transport_options["visibility_timeout"])
"""


def test_a_redis_brokers_visibility_timeout_outlasts_every_task_time_limit(tmp_path):
    # A retrain build limit past Kombu's 3600 s default: Redis would redeliver it while it runs.
    env = {"CELERY_BROKER_URL": _REDIS_BROKER, "FEEDBACK_RETRAIN_TIME_LIMIT": "5000"}
    result = subprocess.run(
        [sys.executable, "-c", _LIMITS_AND_VISIBILITY],
        cwd=ROOT,
        env={**os.environ, "ROUTERHUB_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    longest, visibility = map(int, result.stdout.split())
    assert longest == 5060
    assert visibility >= longest + 300


def test_a_redis_visibility_timeout_shorter_than_a_task_time_limit_fails_fast(tmp_path):
    result = _boot(
        {
            "ROUTERHUB_VAR_DIR": str(tmp_path),
            "CELERY_BROKER_URL": _REDIS_BROKER,
            "TRAINING_HARD_TIME_LIMIT": "4000",
            "CELERY_BROKER_VISIBILITY_TIMEOUT": "3600",
        }
    )

    assert result.returncode != 0
    assert "CELERY_BROKER_VISIBILITY_TIMEOUT must be at least 4300 s" in result.stderr
    assert "TRAINING_HARD_TIME_LIMIT" in result.stderr


def test_an_invitation_mail_stuck_age_within_the_mail_tasks_time_limit_fails_fast(tmp_path):
    """Below the mail task's hard time limit (plus 60 s) the sweep would take for lost a mail
    its task is still sending. Old code: any value of at least 1 booted."""
    result = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "INVITATION_MAIL_STUCK_SECONDS": "149"})

    assert result.returncode != 0
    assert "INVITATION_MAIL_STUCK_SECONDS must be at least 150 (the mail task's 90 s" in (
        result.stderr
    )
    ok = _boot({"ROUTERHUB_VAR_DIR": str(tmp_path), "INVITATION_MAIL_STUCK_SECONDS": "150"})
    assert ok.returncode == 0, ok.stderr
