"""The organization settings form writes only what the person changed on the page, on the
organization's locked row: a setting another owner changed after the page was shown stays. (The
form saved the whole row: a rename from a page still showing no budget removed the budget another
owner had just set.)"""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import Organization
from tests.factories import Tenants, dashboard_client

pytestmark = pytest.mark.django_db


def test_a_rename_keeps_a_budget_set_after_the_page_was_shown(tenants: Tenants) -> None:
    organization = tenants.organization
    first = dashboard_client(tenants.owner, organization)
    page = first.get("/dashboard/organization/")
    assert b'name="initial-monthly_budget"' in page.content  # what the page showed goes back
    shown = {"name": organization.name, "monthly_budget": "", "prompt_logging": ""}
    Organization.objects.filter(pk=organization.pk).update(  # another owner, meanwhile
        monthly_budget=Decimal("40"), prompt_logging=True
    )

    first.post(
        "/dashboard/organization/settings",
        {"name": "Acme Two", "monthly_budget": ""} | {f"initial-{k}": v for k, v in shown.items()},
    )

    organization.refresh_from_db()
    assert organization.name == "Acme Two"
    assert (organization.monthly_budget, organization.prompt_logging) == (Decimal("40"), True)


def test_a_change_the_person_made_is_saved(tenants: Tenants) -> None:
    organization = tenants.organization
    owner = dashboard_client(tenants.owner, organization)
    shown = {"name": organization.name, "monthly_budget": "", "prompt_logging": "False"}

    owner.post(
        "/dashboard/organization/settings",
        {"name": organization.name, "monthly_budget": "25", "prompt_logging": "on"}
        | {f"initial-{k}": v for k, v in shown.items()},
    )

    organization.refresh_from_db()
    assert (organization.monthly_budget, organization.prompt_logging) == (Decimal("25"), True)
