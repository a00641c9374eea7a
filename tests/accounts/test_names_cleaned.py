"""Migrations accounts 0009 and routing 0013: names stored before input refused bidi overrides
and invisible format characters are cleaned with ``one_line``, so the organization settings form
(which re-submits the name) accepts a setting change again; reversing is a no-op."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import migrations

from accounts.models import ApiKey, Organization
from routerhub.name_cleanup import names_clean
from tests.factories import Tenants, dashboard_client, key_make
from training.models import Router

accounts_0009 = importlib.import_module("accounts.migrations.0009_names_cleaned")
routing_0013 = importlib.import_module("routing.migrations.0013_names_cleaned")


def test_both_migrations_clean_outside_one_transaction_and_reverse_as_no_ops() -> None:
    for module in (accounts_0009, routing_0013):
        assert module.Migration.atomic is False
        [operation] = module.Migration.operations
        assert isinstance(operation, migrations.RunPython) and operation.reversible
        assert operation.reverse_code is migrations.RunPython.noop


@pytest.mark.django_db(transaction=True)
def test_stored_names_are_cleaned_and_the_settings_form_accepts_a_change_again(
    tenants: Tenants,
) -> None:
    organization = tenants.organization
    Organization.objects.filter(pk=organization.pk).update(name="Acme\u202egnp.exe")
    dashboard = dashboard_client(tenants.owner, organization)
    settings_change = {"name": "Acme\u202egnp.exe", "monthly_budget": "25"}
    refused = dashboard.post("/dashboard/organization/settings", settings_change, follow=True)
    assert Organization.objects.get(pk=organization.pk).monthly_budget is None
    key_make(organization, name="ci key")
    key = ApiKey.objects.get(organization=organization, name="ci key")
    ApiKey.objects.filter(pk=key.pk).update(name="ci\r\nkey\u200b")
    router = Router.objects.create(organization=organization, slug="quiz", name="Qu\u00adiz\u2066")
    blank = Router.objects.create(organization=organization, slug="blank", name="\u202e\u200b")
    clean = Router.objects.create(organization=organization, slug="clean", name="Team \u200d ok")

    accounts_0009.accounts_names_clean(django_apps, None)
    routing_0013.routing_names_clean(django_apps, None)

    assert Organization.objects.get(pk=organization.pk).name == "Acmegnp.exe"
    assert ApiKey.objects.get(pk=key.pk).name == "ci key"
    names = dict(Router.objects.values_list("pk", "name"))
    assert (names[router.pk], names[blank.pk]) == ("Quiz", "Unnamed")
    assert names[clean.pk] == "Team \u200d ok"  # the joiner stays
    assert "control characters" in refused.text
    dashboard.post("/dashboard/organization/settings", settings_change | {"name": "Acmegnp.exe"})
    assert Organization.objects.get(pk=organization.pk).monthly_budget == Decimal("25")


@pytest.mark.django_db(transaction=True)
def test_names_are_cleaned_batch_by_batch_and_a_rerun_rewrites_nothing(tenants: Tenants) -> None:
    routers = [
        Router.objects.create(organization=tenants.organization, slug=f"r{i}", name=f"r\u2028{i}")
        for i in range(5)
    ]
    model = django_apps.get_model("training", "Router")

    first = names_clean(model, batch=2)  # several primary-key ranges
    again = names_clean(model, batch=2)

    assert (first, again) == (5, 0)
    assert [Router.objects.get(pk=r.pk).name for r in routers] == [f"r {i}" for i in range(5)]
