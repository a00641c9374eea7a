"""Migrations 0006/0007: the creator column is added alone (no table rewrite, the lock held for
an instant), then filled in batches by primary-key range outside one long transaction."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.db import migrations

from accounts.models import Organization
from tests.factories import member_add, organization_make, user_make

backfill = importlib.import_module("accounts.migrations.0007_organization_created_by_backfill")
column = importlib.import_module("accounts.migrations.0006_organization_created_by")


def test_the_column_is_added_alone_and_the_backfill_runs_outside_one_transaction() -> None:
    assert [type(op) for op in column.Migration.operations] == [migrations.AddField]
    assert column.Migration.operations[0].field.null
    assert backfill.Migration.atomic is False
    assert [type(op) for op in backfill.Migration.operations] == [migrations.RunPython]


@pytest.mark.django_db(transaction=True)
def test_the_backfill_names_each_founder_in_batches_and_keeps_a_recorded_creator() -> None:
    founders = [user_make() for _ in range(5)]
    organizations = [organization_make(owner=founder) for founder in founders]
    for organization in organizations[:3]:
        member_add(organization)  # a later member is not the founder
    recorded = organizations[4]
    stranger = user_make()
    Organization.objects.filter(pk__in=[o.pk for o in organizations[:4]]).update(created_by=None)
    Organization.objects.filter(pk=recorded.pk).update(created_by=stranger)

    backfill.creators_backfill(django_apps, None, batch=2)  # several pk ranges

    creators = dict(Organization.objects.values_list("pk", "created_by"))
    assert [creators[o.pk] for o in organizations[:4]] == [f.pk for f in founders[:4]]
    assert creators[recorded.pk] == stranger.pk  # a recorded creator is left alone
