"""Credits, ledger, generation, usage aggregates and CSV export over the API; credits_grant."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from accounts.models import ApiKey, KeyScope
from billing.models import Reservation, ReservationState, UsageGeneration
from billing.services import (
    ledger_post,
)
from tests.factories import dashboard_client, key_client, key_make, usage_served

pytestmark = pytest.mark.django_db


@pytest.fixture
def billed(tenants):
    organization = tenants.organization
    ledger_post(
        organization=organization, kind="promotion", amount=Decimal("10"), idempotency_key="g"
    )
    plaintext = key_make(organization, name="app")
    key = ApiKey.objects.get(organization=organization, name="app")
    yesterday = timezone.now() - timedelta(days=1)
    ids = [
        usage_served(organization, key, "demo/small", "0.001", yesterday),
        usage_served(organization, key, "demo/large", "0.02"),
        usage_served(organization, None, "demo/small", "0.003", router="router/support"),
    ]
    manage = key_client(key_make(organization, scope=KeyScope.MANAGE))
    return tenants, key_client(plaintext), manage, ids


def test_credits_report_balance_and_totals(billed):
    _, _, manage, _ = billed

    body = manage.get("/api/v1/credits").json()

    assert body == {
        "balance": "9.97600000",
        "reserved": "0.00000000",
        "available": "9.97600000",
        "total_purchased": "0.00000000",
        "total_used": "0.02400000",
        "currency": "USD",
        # OpenRouter's shape of the same path: total_credits - total_usage is the balance.
        "data": {"total_credits": 10.0, "total_usage": 0.024},
    }


@pytest.mark.parametrize("path", ["/api/v1/credits", "/dashboard/credits/"])
def test_what_is_reserved_is_read_with_the_account_in_one_statement(billed, path):
    """``CreditAccount.reserved`` reads the hold row: the pages that show it read both rows in
    one statement (one snapshot of both), never the hold row in a query of its own."""
    tenants, _, manage, _ = billed
    client = (
        manage if path.startswith("/api") else dashboard_client(tenants.owner, tenants.organization)
    )

    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200

    reads = [q["sql"] for q in queries if '"billing_credithold"' in q["sql"]]
    assert len(reads) == 1 and 'FROM "billing_creditaccount"' in reads[0], reads


def test_ledger_lists_newest_first_with_usage_charges(billed):
    _, _, manage, ids = billed

    body = manage.get("/api/v1/ledger").json()

    kinds = [entry["kind"] for entry in body["results"]]
    assert kinds == ["usage", "usage", "usage", "promotion"]
    assert body["results"][0]["reference"] == ids[2]
    assert body["results"][0]["amount"] == "-0.00300000"


def test_generation_is_readable_with_an_inference_key(billed):
    _, inference, _, ids = billed

    body = inference.get("/api/v1/generation", {"id": ids[1]}).json()

    assert body["id"] == ids[1] and body["model"] == "demo/large" and body["cost"] == "0.02000000"
    assert body["status"] == "succeeded" and body["streamed"] is False


def _component(schema: dict, reference: dict) -> dict:
    return schema["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def test_the_generation_schema_lists_every_field_the_answer_has(billed):
    """The OpenAPI schema of GET /api/v1/generation names the fields the endpoint answers (its
    envelope once listed only ``data``); ``steps`` comes only with a pipeline's records."""
    _, inference, _, ids = billed
    body = inference.get("/api/v1/generation", {"id": ids[1]}).json()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    ok = schema["paths"]["/api/v1/generation"]["get"]["responses"]["200"]
    component = _component(schema, ok["content"]["application/json"]["schema"])

    assert set(component["properties"]) == set(body) | {"steps"}
    assert set(component["required"]) == set(body)
    data = _component(schema, component["properties"]["data"]["allOf"][0])
    assert set(data["properties"]) == set(body["data"])


def test_generation_of_another_organization_is_404(billed):
    tenants, _, _, ids = billed
    outsider = key_client(key_make(tenants.outsider_organization))

    response = outsider.get("/api/v1/generation", {"id": ids[0]})

    assert response.status_code == 404
    assert response.json()["error"]["param"] == "id"


def test_usage_groups_by_model_key_router_and_day(billed):
    _, _, manage, _ = billed

    by_model = manage.get("/api/v1/usage", {"group_by": "model"}).json()["results"]
    by_key = manage.get("/api/v1/usage", {"group_by": "key"}).json()["results"]
    by_router = manage.get("/api/v1/usage", {"group_by": "router"}).json()["results"]
    by_day = manage.get("/api/v1/usage", {"group_by": "day"}).json()["results"]

    assert {r["group"]: (r["requests"], r["cost"]) for r in by_model} == {
        "demo/large": (1, "0.02000000"),
        "demo/small": (2, "0.00400000"),
    }
    assert {r["group"]: r["requests"] for r in by_key} == {"app": 2, "(deleted key)": 1}
    assert {r["group"] for r in by_router} == {"", "router/support"}
    assert len(by_day) == 2 and sum(r["requests"] for r in by_day) == 3


def test_usage_pages_end_where_the_first_page_was_asked(billed):
    tenants, _, manage, _ = billed

    first = manage.get("/api/v1/usage", {"group_by": "model", "limit": 1}).json()
    usage_served(tenants.organization, None, "demo/aaa-new", "0.001")  # sorts before the others
    second = manage.get(first["next"]).json()
    back = manage.get(second["previous"]).json()
    fresh = manage.get("/api/v1/usage", {"group_by": "model"}).json()

    # Groups were recomputed per page: the new group shifted demo/large onto page 2 again.
    assert [r["group"] for r in first["results"] + second["results"]] == [
        "demo/large",
        "demo/small",
    ]
    assert "end=" in first["next"] and second["next"] is None and second["count"] == 2
    assert back["results"] == first["results"]
    assert "demo/aaa-new" in {r["group"] for r in fresh["results"]}


def test_usage_rejects_a_bad_group_and_an_inverted_range(billed):
    _, _, manage, _ = billed

    bad_group = manage.get("/api/v1/usage", {"group_by": "colour"})
    inverted = manage.get("/api/v1/usage", {"start": "2026-02-01", "end": "2026-01-01"})

    assert bad_group.status_code == 400 and bad_group.json()["error"]["param"] == "group_by"
    assert inverted.status_code == 400 and inverted.json()["error"]["param"] == "end"


def test_usage_export_csv_has_one_row_per_request_with_exact_costs(billed):
    _, _, manage, ids = billed

    response = manage.get("/api/v1/usage/export.csv")

    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {r["id"]: r["cost"] for r in rows}[ids[1]] == "0.02000000"


def test_credits_grant_writes_a_ledger_entry(tenants, capsys):
    call_command("credits_grant", tenants.organization.slug, "25", "--reason", "support ticket 42")

    entry = tenants.organization.credit_account
    assert entry.balance == Decimal("25")
    assert "balance now 25" in capsys.readouterr().out


def test_credits_grant_refuses_unknown_organization_and_bad_amount(tenants):
    with pytest.raises(CommandError, match="No organization"):
        call_command("credits_grant", "nope", "5", "--reason", "x")
    with pytest.raises(CommandError, match="AMOUNT must be a number"):
        call_command("credits_grant", tenants.organization.slug, "five", "--reason", "x")


def test_feedback_is_stored_against_the_generation_and_replaced_on_resubmit(billed):
    _, inference, _, ids = billed

    first = inference.post(
        "/api/v1/feedback", {"generation_id": ids[1], "score": 0.2}, format="json"
    )
    thumbs_up = inference.post(
        "/api/v1/feedback", {"generation_id": ids[1], "score": True}, format="json"
    )

    assert first.status_code == 201 and thumbs_up.status_code == 201
    # Feedback hangs on the generation's guard row (the record's table is partitioned).
    assert UsageGeneration.objects.get(pk=ids[1]).feedback.score == 1.0


def test_feedback_validates_score_and_hides_other_organizations(billed):
    tenants, inference, _, ids = billed
    outsider = key_client(key_make(tenants.outsider_organization))

    out_of_range = inference.post(
        "/api/v1/feedback", {"generation_id": ids[0], "score": 7}, format="json"
    )
    foreign = outsider.post(
        "/api/v1/feedback", {"generation_id": ids[0], "score": 1}, format="json"
    )

    assert out_of_range.status_code == 400 and out_of_range.json()["error"]["param"] == "score"
    assert foreign.status_code == 404


def test_a_request_answered_but_not_yet_settled_is_a_retryable_503_not_a_404(billed):
    """Feedback (or the generation) asked for right after the answer, before settlement wrote
    the usage record: README's client example does so. The hold says the request exists."""
    tenants, inference, _, _ = billed
    outsider = key_client(key_make(tenants.outsider_organization))
    Reservation.objects.create(
        organization=tenants.organization,
        generation_id="gen-answered-not-settled",
        key=ApiKey.objects.get(organization=tenants.organization, name="app"),
        amount=Decimal("0.01"),
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    body = {"generation_id": "gen-answered-not-settled", "score": 1}

    feedback = inference.post("/api/v1/feedback", body, format="json")
    generation = inference.get("/api/v1/generation", {"id": "gen-answered-not-settled"})
    foreign = outsider.post("/api/v1/feedback", body, format="json")
    unknown = inference.post("/api/v1/feedback", body | {"generation_id": "gen-no"}, format="json")

    for response, param in ((feedback, "generation_id"), (generation, "id")):
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert response.json()["error"]["param"] == param
        assert "not settled yet" in response.json()["error"]["message"]
    assert foreign.status_code == 404 and unknown.status_code == 404


@pytest.mark.parametrize("state", [ReservationState.HELD, ReservationState.FREE])
def test_a_live_hold_held_or_free_is_a_503_and_an_expired_one_a_404(billed, state) -> None:
    """A zero-cost answer (a ``:free`` model) has its hold marked ``free`` just before its draft
    is queued (``usage_record_async``): it settles as soon as a ``held`` one, so both are a 503
    with ``Retry-After`` (the dashboard shows "being recorded"). Only a hold past its
    ``expires_at`` (its draft lost; the sweep comes within 15 minutes) is a 404 in both."""
    tenants, inference, _, _ = billed
    for name, minutes in (("gen-live", 5), ("gen-expired", -1)):
        Reservation.objects.create(
            organization=tenants.organization,
            generation_id=name,
            key=ApiKey.objects.get(organization=tenants.organization, name="app"),
            amount=Decimal("0.01"),
            state=state,
            expires_at=timezone.now() + timedelta(minutes=minutes),
        )
    client = dashboard_client(tenants.owner, tenants.organization)

    for name, code, page in (("gen-live", 503, 200), ("gen-expired", 404, 404)):
        feedback = inference.post(
            "/api/v1/feedback", {"generation_id": name, "score": 1}, format="json"
        )
        generation = inference.get("/api/v1/generation", {"id": name})
        dashboard = client.get(f"/dashboard/generations/{name}/")
        assert (feedback.status_code, generation.status_code) == (code, code), name
        assert ("Retry-After" in generation.headers) == (code == 503)
        assert dashboard.status_code == page, name


def test_a_record_committed_after_the_callers_lookup_is_a_503_not_a_404(billed):
    """The settler writes the record and settles the hold in one commit: a caller whose record
    lookup ran just before it finds no pending hold, and must be told to retry, not 404."""
    from billing.selectors import generation_missing
    from routerhub.domain import NotFound, Unavailable

    tenants, _, _, ids = billed
    organization = tenants.organization

    late = generation_missing(organization_id=organization.pk, generation_id=ids[1], param="id")
    absent = generation_missing(organization_id=organization.pk, generation_id="gen-no", param="id")

    assert isinstance(late, Unavailable) and late.headers == {"Retry-After": "1"}
    assert isinstance(absent, NotFound)
