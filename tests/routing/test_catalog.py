"""The catalog file, its sync, the demo provider and the fake upstream's behaviour."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from routing.fake_upstream.answers import answer_text, count_tokens
from routing.models import CatalogModel, CatalogRevision, Endpoint, Provider
from routing.services import CATALOG_FILE
from tests.factories import organization_make

REQUIRED_PROVIDERS = {
    "openai",
    "anthropic",
    "google",
    "mistral",
    "groq",
    "together",
    "deepseek",
    "custom",
}


def test_every_catalog_price_cites_its_source_and_date() -> None:
    catalog = tomllib.loads(CATALOG_FILE.read_text())

    assert {p["slug"] for p in catalog["providers"]} >= REQUIRED_PROVIDERS
    for item in catalog["endpoints"]:
        assert item["source"].startswith("https://"), item
        assert date.fromisoformat(item["checked"]) <= date(2026, 12, 31), item
        assert float(item["input"]) >= 0 and float(item["output"]) >= 0


@pytest.mark.django_db
def test_sync_catalog_is_idempotent_and_stores_per_token_prices() -> None:
    call_command("sync_catalog", stdout=StringIO())
    counts = (Provider.objects.count(), CatalogModel.objects.count(), Endpoint.objects.count())
    call_command("sync_catalog", stdout=StringIO())

    assert (
        Provider.objects.count(),
        CatalogModel.objects.count(),
        Endpoint.objects.count(),
    ) == counts
    mini = Endpoint.objects.get(model_id="openai/gpt-4o-mini")
    assert (mini.input_price, mini.cached_input_price, mini.output_price) == (
        Decimal("0.00000015"),
        Decimal("0.000000075"),
        Decimal("0.0000006"),
    )
    assert Endpoint.objects.filter(model_id="meta-llama/llama-3.3-70b-instruct").count() == 2
    assert CatalogRevision.objects.get().revision > 0


@pytest.mark.django_db
def test_demo_seeder_registers_three_simulated_models_on_the_fake_upstream(settings) -> None:  # type: ignore[no-untyped-def]
    from routing.demo import seed_demo_provider

    seed_demo_provider(organization_make())

    demo = {
        m.id: m for m in CatalogModel.objects.filter(is_simulated=True, supports_embeddings=False)
    }
    assert set(demo) == {"demo/small", "demo/medium", "demo/large"}
    embed = CatalogModel.objects.get(is_simulated=True, supports_embeddings=True)
    assert embed.id == "demo/embed" and not embed.supports_streaming
    assert {e.provider.slug for e in embed.endpoints.all()} == {"demo", "demo-gemini"}
    prices = [
        Endpoint.objects.filter(model_id=m).first().output_price
        for m in ("demo/small", "demo/medium", "demo/large")
    ]  # type: ignore[union-attr]
    assert prices == sorted(prices) and prices[0] < prices[-1]
    assert Provider.objects.get(slug="demo").base_url == f"{settings.DEMO_UPSTREAM_URL}/v1"
    assert {p.api_style for p in Provider.objects.filter(is_simulated=True)} == {
        "openai",
        "anthropic",
        "gemini",
    }


def test_fake_models_answer_deterministically_and_bigger_models_answer_longer() -> None:
    prompt = "How do tides work?"

    small, medium, large = (
        answer_text(f"demo-{size}", prompt) for size in ("small", "medium", "large")
    )

    assert answer_text("demo-small", prompt) == small
    assert count_tokens(small) < count_tokens(medium) < count_tokens(large)


def test_bigger_fake_models_get_arithmetic_right_more_often() -> None:
    prompts = [f"What is {a} * {a + 7}?" for a in range(11, 71)]

    def accuracy(model: str) -> float:
        right = sum(
            str(int(p.split()[2]) * int(p.split()[4].rstrip("?"))) in answer_text(model, p)
            for p in prompts
        )
        return right / len(prompts)

    assert accuracy("demo-small") < accuracy("demo-medium") < accuracy("demo-large") == 1.0


@pytest.mark.django_db
def test_models_page_lists_prices_per_million_and_searches(tenants) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import session_client

    call_command("sync_catalog", stdout=StringIO())
    client = session_client(tenants.member, tenants.organization)

    everything = client.get("/dashboard/models/").content.decode()
    claude_only = client.get("/dashboard/models/", {"q": "claude"}).content.decode()

    assert "openai/gpt-4o-mini" in everything and "$0.15" in everything and "$0.6" in everything
    assert "anthropic/claude-sonnet-4.5" in claude_only and "openai/gpt-4o-mini" not in claude_only
