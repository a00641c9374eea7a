"""An inference key rates and reads only the requests it (or a key it made) sent.

Feedback feeds the router's online calibration and its retraining: a low-trust key of the
organization must not rate (nor read) the other keys' requests, nor replace what a person said
from the dashboard. Management keys and sessions keep the organization's rights."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey, KeyScope, Membership, Role
from billing.models import Reservation, UsageGeneration
from routing.models import Feedback
from tests.factories import (
    dashboard_client,
    funded_organization_make,
    key_client,
    key_make,
    usage_served,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(db):
    organization = funded_organization_make("10")
    owner = Membership.objects.get(organization=organization, role=Role.OWNER).user
    plain = {name: key_make(organization, name=name) for name in ("alice", "bob")}
    # A key made by alice's key (as a key alice's once made while it could): alice answers for it.
    alice = ApiKey.objects.get(organization=organization, name="alice")
    plain["child"] = key_make(organization, name="child", created_by_key=alice)
    served = {
        name: usage_served(
            organization, ApiKey.objects.get(organization=organization, name=name), name, "0.01"
        )
        for name in plain
    }
    clients = {name: key_client(text) for name, text in plain.items()}
    clients["manage"] = key_client(key_make(organization, scope=KeyScope.MANAGE))
    return organization, owner, clients, served


def _rate(client, generation_id: str, score: float = 0.0):
    return client.post(
        "/api/v1/feedback", {"generation_id": generation_id, "score": score}, format="json"
    )


def test_an_inference_key_rates_only_requests_it_or_a_key_it_made_sent(keys):
    _, _, clients, served = keys

    foreign = _rate(clients["bob"], served["alice"])
    unknown = _rate(clients["bob"], "gen-nobody")

    assert foreign.status_code == 404, foreign.json()
    # The same answer as an id that does not exist: the id is not confirmed.
    assert foreign.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
        "gen-nobody", served["alice"]
    )
    # It names the rule: a second key of the organization (a replacement after rotation, a
    # separate rating service) learns which key to rate with.
    assert foreign.json()["error"]["message"] == (
        f"No generation {served['alice']} sent by this key or keys it made; rate it with the "
        "key that sent it or a management key."
    )
    assert not Feedback.objects.filter(usage_id=served["alice"]).exists()
    assert _rate(clients["child"], served["alice"]).status_code == 404  # not up the lineage
    assert _rate(clients["alice"], served["alice"]).status_code == 201
    assert _rate(clients["alice"], served["child"]).status_code == 201  # down it
    assert _rate(clients["manage"], served["bob"], 1.0).status_code == 201
    assert UsageGeneration.objects.get(pk=served["bob"]).feedback.score == 1.0


def test_an_inference_key_never_replaces_a_persons_dashboard_feedback(keys):
    organization, owner, clients, served = keys
    person = dashboard_client(owner, organization)

    given = person.post(f"/dashboard/feedback/{served['alice']}", {"score": "good"})
    assert given.status_code == 302
    replaced = _rate(clients["alice"], served["alice"], 0.0)

    assert replaced.status_code == 409, replaced.json()
    assert replaced.json()["error"]["param"] == "generation_id"
    assert UsageGeneration.objects.get(pk=served["alice"]).feedback.score == 1.0
    # A management key (and the person) keep the right to change it.
    assert _rate(clients["manage"], served["alice"], 0.5).status_code == 201
    assert UsageGeneration.objects.get(pk=served["alice"]).feedback.score == 0.5


def test_an_inference_key_reads_only_requests_it_or_a_key_it_made_sent(keys):
    organization, owner, clients, served = keys
    # Another key's request answered, not yet settled: a 404 too, never a 503 confirming it.
    bob = ApiKey.objects.get(organization=organization, name="bob")
    Reservation.objects.create(
        organization=organization,
        generation_id="gen-per-key-pending",
        key=bob,
        amount=Decimal("0.01"),
        expires_at=timezone.now() + timedelta(minutes=5),
    )

    def read(name: str, generation_id: str) -> int:
        return clients[name].get("/api/v1/generation", {"id": generation_id}).status_code

    assert read("bob", served["alice"]) == 404
    message = clients["bob"].get("/api/v1/generation", {"id": "gen-x"}).json()["error"]["message"]
    assert message.startswith("No generation gen-x sent by this key or keys it made; read it")
    assert read("alice", "gen-per-key-pending") == 404
    assert read("child", served["alice"]) == 404
    assert read("alice", served["alice"]) == 200 and read("alice", served["child"]) == 200
    assert read("bob", "gen-per-key-pending") == 503
    assert read("manage", served["bob"]) == 200 and read("manage", served["alice"]) == 200
    owner = dashboard_client(owner, organization)
    assert owner.get(f"/dashboard/generations/{served['bob']}/").status_code == 200


def test_an_inference_key_never_replaces_a_management_keys_feedback(keys):
    _, _, clients, served = keys

    assert _rate(clients["manage"], served["alice"], 1.0).status_code == 201
    replaced = _rate(clients["alice"], served["alice"], 0.0)

    assert replaced.status_code == 409, replaced.json()
    assert "management key" in replaced.json()["error"]["message"]
    assert UsageGeneration.objects.get(pk=served["alice"]).feedback.score == 1.0
    # An inference key's own feedback it replaces, as before.
    assert _rate(clients["alice"], served["child"], 1.0).status_code == 201
    assert _rate(clients["alice"], served["child"], 0.0).status_code == 201
