"""Role rules as people meet them: a member gets the 403 page, an outsider a 404."""

from __future__ import annotations

import re
from typing import Any

import pytest

from accounts.models import Invitation, Membership, Role
from tests.browser.conftest import Browser, expect, log_in
from tests.factories import PASSWORD, Tenants, dashboard_client, tenants_make
from tests.routing.servers import ServerThread

pytestmark = pytest.mark.browser


def not_allowed(response: Any) -> bool:
    return response.status_code == 403 and "Not allowed" in response.content.decode()


def not_found(response: Any) -> bool:
    return response.status_code == 404 and "Not found" in response.content.decode()


@pytest.fixture
def acme(site: ServerThread) -> Tenants:
    """Acme (owner, admin, member) and an outsider with an organization of their own."""
    return tenants_make()


def test_a_member_gets_the_403_page_for_credits_and_member_management(
    roles_browser: Browser, acme: Tenants
) -> None:
    page = roles_browser.page
    log_in(roles_browser, acme.member.email, PASSWORD)
    main_nav = page.get_by_role("navigation", name="Main")
    expect(main_nav.get_by_role("link", name="Usage")).to_be_visible()
    expect(main_nav.get_by_role("link", name="Credits")).to_have_count(0)
    roles_browser.shot("overview")

    response = page.goto("/dashboard/credits/")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.locator("main")).to_contain_text("owner role")
    expect(page.get_by_role("link", name="Back to the overview")).to_be_visible()
    roles_browser.shot("credits-403")

    page.goto("/dashboard/organization/")
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    roles_browser.shot("organization")
    assert roles_browser.foreign_requests() == []
    assert roles_browser.errors == []

    # The actions behind those pages, posted directly, get the same 403 page.
    owner_membership = Membership.objects.get(user=acme.owner, organization=acme.organization)
    own_membership = Membership.objects.get(user=acme.member, organization=acme.organization)
    for user in (acme.member, acme.admin):  # billing and members are the owner's
        client = dashboard_client(user)
        assert not_allowed(client.get("/dashboard/credits/"))
        assert not_allowed(client.post("/dashboard/credits/buy", {"amount": "20"}))
        assert not_allowed(
            client.post(f"/dashboard/members/{owner_membership.pk}", {"action": "remove"})
        )
        assert not_allowed(
            client.post(f"/dashboard/members/{own_membership.pk}", {"role": Role.OWNER})
        )
        assert not_allowed(
            client.post("/dashboard/organization/", {"email": "x@example.com", "role": "owner"})
        )
        assert not_allowed(client.post("/dashboard/organization/settings", {"name": "Mine"}))
    own_membership.refresh_from_db()
    assert own_membership.role == Role.MEMBER
    assert Membership.objects.filter(pk=owner_membership.pk).exists()
    assert not Invitation.objects.filter(organization=acme.organization).exists()

    # The owner reaches the same page: the 403 is about the role, not the page.
    assert (
        dashboard_client(acme.owner, acme.organization).get("/dashboard/credits/").status_code
        == 200
    )


def test_an_outsider_gets_404_for_another_organizations_dataset_and_router(
    roles_browser: Browser, acme: Tenants
) -> None:
    from training import services
    from training.models import Dataset

    dataset = Dataset.objects.create(
        organization=acme.organization, name="Acme secrets", file="datasets/acme.csv"
    )
    services.router_create(
        organization=acme.organization, slug="acme-router", name="Acme", candidates=[]
    )
    owned = {
        "dataset": f"/dashboard/datasets/{dataset.pk}/",
        "router": "/dashboard/routers/acme-router/",
    }
    owner = dashboard_client(acme.owner, acme.organization)
    assert all(owner.get(url).status_code == 200 for url in owned.values())

    page = roles_browser.page
    log_in(roles_browser, acme.outsider.email, PASSWORD)
    for name, url in owned.items():
        response = page.goto(url)
        assert response is not None and response.status == 404, url
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator("main")).not_to_contain_text(re.compile("Acme"))
        roles_browser.shot(f"{name}-404")
    assert roles_browser.foreign_requests() == []
    assert roles_browser.errors == []

    outsider = dashboard_client(acme.outsider)
    assert not_found(outsider.post(f"/dashboard/datasets/{dataset.pk}/delete"))
    assert not_found(outsider.get("/dashboard/routers/acme-router/versions/1/"))
    assert not_found(
        outsider.post("/dashboard/organization/switch", {"organization": acme.organization.pk})
    )
    assert Dataset.objects.filter(pk=dataset.pk).exists()
