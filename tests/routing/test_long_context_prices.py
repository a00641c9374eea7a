"""A price tier by prompt length (catalog.toml's ``long_context``): Gemini 2.5 Pro bills a request
whose prompt is over 200k tokens at $2.50 in / $15 out, not $1.25 / $10. The gateway holds at
the tier its prompt's bound falls in and bills at the tier of the provider's count. Before, every
prompt was billed (and held) at the ≤200k price: a 210k-token prompt cost the platform twice what
it charged. The fake upstream counts the prompt a token per UTF-8 byte (``@tokenizer=bytes``)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.test import RequestFactory

from billing.models import Reservation
from routerhub.money import money
from routing.admin import EndpointAdmin
from routing.gateway.catalog_cache import _endpoint_info
from routing.models import Endpoint
from routing.services import _long_context, catalog_sync_file
from tests.factories import user_make
from tests.routing.world import World, base_catalog, endpoint, model

M = Decimal(1_000_000)
TIER = {"threshold": 200_000, "input": "2.50", "cached_input": "0.25", "output": "15.00"}


def _catalog(world: World, *extra: dict[str, object]) -> None:
    data = base_catalog(world.fake_url)
    data["endpoints"].extend(extra)
    data["models"].append(model("test/long") | {"context_length": 1_048_576})
    data["endpoints"].append(
        endpoint("test/long", "fake-gemini", "gemini-2.5-pro@tokenizer=bytes", "1.25", "10",
                 long_context=TIER)
    )  # fmt: skip
    world.catalog(data)


@pytest.mark.parametrize(
    ("prompt_bytes", "prices"),
    [(210_000, (Decimal("2.50"), Decimal(15))), (150_000, (Decimal("1.25"), Decimal(10)))],
)
def test_a_prompt_over_the_threshold_is_billed_and_held_at_the_long_context_price(
    world: World, prompt_bytes: int, prices: tuple[Decimal, Decimal]
) -> None:
    _catalog(world)
    prompt = ("whales " * (prompt_bytes // 7 + 1))[:prompt_bytes]

    answer = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/long", "messages": [{"role": "user", "content": prompt}],
              "max_tokens": 50},
        timeout=30,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text[:300]
    usage = answer.json()["usage"]
    assert (usage["prompt_tokens"] > 200_000) == (prompt_bytes > 200_000)
    record = world.usage_record(answer.json()["id"])
    expected = money(
        (usage["prompt_tokens"] * prices[0] + usage["completion_tokens"] * prices[1]) / M
    )
    assert record.cost == expected == money(Decimal(str(usage["cost"])))
    hold = Reservation.objects.get(generation_id=record.generation_id).amount
    assert record.cost <= hold and "over_hold" not in record.flag_list
    assert hold >= money((prompt_bytes * prices[0] + 50 * prices[1]) / M)


@pytest.mark.django_db
def test_the_catalog_prices_gemini_2_5_pro_long_prompts_at_googles_tier() -> None:
    catalog_sync_file()
    pro = _endpoint_info(Endpoint.objects.get(model_id="google/gemini-2.5-pro"))

    short, long = pro.prices.at(200_000), pro.prices.at(200_001)
    assert (short.prompt * M, short.completion * M) == (Decimal("1.25"), Decimal(10))
    assert long.cached_prompt is not None
    assert (long.prompt * M, long.cached_prompt * M, long.completion * M) == (
        Decimal("2.5"), Decimal("0.25"), Decimal(15),
    )  # fmt: skip
    flash = _endpoint_info(Endpoint.objects.get(model_id="google/gemini-2.5-flash"))
    assert flash.prices.at(900_000) == flash.prices  # no tier: one price


def test_a_malformed_long_context_tier_fails_the_sync() -> None:
    with pytest.raises(ValueError, match="threshold"):
        _long_context({"model": "m", "long_context": {"input": "2", "output": "3"}})
    with pytest.raises(ValueError, match="input and output"):
        _long_context({"model": "m", "long_context": {"threshold": 10, "input": "2"}})
    # Cached long prompts need a cached price when the short tier has one.
    with pytest.raises(ValueError, match="cached_input"):
        _long_context(
            {"model": "m", "cached_input": "0.1", "long_context": {"threshold": 10, "input": "2",
                                                                   "output": "3"}}
        )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("tier", "named"),
    [
        (
            {"threshold": 0, "input": "0.0000025", "output": "0.000015", "cached_input": "0"},
            "threshold",
        ),
        ({"threshold": 200_000, "input": "0.0000025", "output": "0.000015"}, "cached_input"),
        ({"threshold": 200_000, "inptu": "0.0000025", "output": "0.000015"}, "unknown keys"),
        ({"threshold": 200_000, "input": "x", "output": "0.000015", "cached_input": "0"}, "input"),
        ({"threshold": 200_000, "input": "0.0000025", "cached_input": "0"}, "input and output"),
        ([200_000, "0.0000025", "0.000015"], "must be an object"),
    ],
)
def test_the_admin_refuses_a_tier_the_gateway_cannot_price(tier: object, named: str) -> None:
    """Before, a mistyped tier was saved and only logged by the gateway (billed at the short
    tier); now the admin's form shows the error on long_context."""
    catalog_sync_file()
    row = Endpoint.objects.get(model_id="google/gemini-2.5-pro")
    assert row.cached_input_price is not None
    request = RequestFactory().get("/")
    request.user = user_make()
    request.user.is_staff = request.user.is_superuser = True
    form_class = EndpointAdmin(Endpoint, admin.site).get_form(request, row)
    data = model_to_dict(row) | {"long_context": json.dumps(tier)}
    data = {k: "" if v is None else v for k, v in data.items()}

    form = form_class(data=data, instance=row)

    assert not form.is_valid()
    assert named in str(form.errors["long_context"])
    row.long_context = {"threshold": 200_000, "input": "0.0000025", "output": "0.000015",
                        "cached_input": "0.00000025"}  # fmt: skip
    row.full_clean()


def test_a_list_of_prompts_is_billed_each_prompt_at_its_own_tier(world: World) -> None:
    """Two 120k-token prompts on /v1/completions are two calls under the 200k threshold, as the
    hold and Google price them. Before, their summed 240k tokens' tier: $0.601 on a $0.301 hold."""
    _catalog(world)
    prompt = ("whales " * (120_000 // 7 + 1))[:120_000]

    answer = httpx.post(
        f"{world.gateway_url}/v1/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/long", "prompt": [prompt, prompt], "max_tokens": 50},
        timeout=30,
    )

    assert answer.status_code == 200, answer.text[:300]
    usage = answer.json()["usage"]
    assert usage["prompt_tokens"] > 200_000
    record = world.usage_record(answer.json()["id"])
    expected = money(
        (usage["prompt_tokens"] * Decimal("1.25") + usage["completion_tokens"] * 10) / M
    )
    assert abs(record.cost - expected) <= Decimal("0.000002")  # each prompt rounded on its own
    hold = Reservation.objects.get(generation_id=record.generation_id).amount
    assert record.cost <= hold and "over_hold" not in record.flag_list


@pytest.mark.parametrize("provider", [{"max_price": {"prompt": 2}}, {"sort": "price"}])
def test_max_price_and_price_sorting_compare_the_prompts_tier(
    world: World, provider: dict[str, object]
) -> None:
    """A 210k-token prompt is priced $2.50 in at the Gemini-2.5-Pro-like endpoint, above a
    max_price of 2 and dearer than a flat $1.50 one. Before, its ≤200k $1.25 was compared."""
    _catalog(world, endpoint("test/long", "fake-openai-b", "gpt-4o@tokenizer=bytes", "1.50", "12"))
    prompt = ("whales " * (210_000 // 7 + 1))[:210_000]

    answer = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": "test/long", "messages": [{"role": "user", "content": prompt}],
              "max_tokens": 50, "provider": provider},
        timeout=30,
    )  # fmt: skip

    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["provider"] == "fake-openai-b"
