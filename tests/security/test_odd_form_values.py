"""Dashboard forms and query strings that read numbers: a value Python half-accepts (``"²"`` is a
digit to ``str.isdigit`` but not to ``int``; ``"Infinity"`` is a ``Decimal`` that cannot be
rounded to cents) is a 4xx or a form message, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages

from billing.models import Payment
from tests.factories import dashboard_client

pytestmark = pytest.mark.django_db


# A decimal string int() refuses (over 4,300 digits): it was a 500.
LONG = pytest.param("1" * 5000, id="5000-digits")


@pytest.mark.parametrize("chosen", ["²", "x", "", LONG])
def test_switching_to_an_organization_that_is_not_a_number_is_a_404(
    tenants: Any, chosen: str
) -> None:
    client = dashboard_client(tenants.owner, tenants.organization)
    response = client.post("/dashboard/organization/switch", {"organization": chosen})
    assert response.status_code == 404


@pytest.mark.parametrize("chosen", ["²", "x", "1; drop", LONG])
def test_deleting_a_provider_key_that_is_not_a_number_is_a_404(tenants: Any, chosen: str) -> None:
    client = dashboard_client(tenants.owner, tenants.organization)
    response = client.post("/dashboard/provider-keys/", {"delete": chosen})
    assert response.status_code == 404


@pytest.mark.parametrize("amount", ["Infinity", "-Infinity", "NaN", "sNaN", "1e999999999"])
def test_a_top_up_amount_that_is_not_a_sum_of_money_is_a_message(tenants: Any, amount: str) -> None:
    client = dashboard_client(tenants.owner, tenants.organization)

    response = client.post("/dashboard/credits/buy", {"amount": amount})

    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("amount must be")
    assert not Payment.objects.exists()
