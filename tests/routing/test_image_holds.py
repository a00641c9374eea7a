"""Image holds: each image is held at what its endpoint's provider documents for it — its real size
read from a data URL's header, its ``detail``, the model's formula from the catalog — or at the
model's most for one image when its size is unknown (``routing.image_tokens``)."""

from __future__ import annotations

import base64
import os
import random
import struct
import tomllib
from decimal import Decimal
from typing import Any

import pytest

from billing.metering import TokenPrices
from routerhub.money import money
from routing.gateway.catalog_cache import EndpointInfo
from routing.gateway.planning import Candidate
from routing.gateway.request_shape import request_validate
from routing.gateway.token_bounds import prompt_token_bound, reservation_max
from routing.image_tokens import (
    ImageAsk,
    base64_image_size,
    data_url_image_size,
    image_rule,
    image_tokens,
)
from routing.services import CATALOG_FILE

M = Decimal(1_000_000)


def _catalog_rule(model_id: str) -> Any:
    with CATALOG_FILE.open("rb") as handle:
        models = tomllib.load(handle)["models"]
    return image_rule(next(m for m in models if m["id"] == model_id).get("image_tokens"))


def _endpoint(model_id: str, style: str, input_: str, output: str) -> EndpointInfo:
    return EndpointInfo(
        1, model_id, "fake", "Fake", style, "https://up.example", "", {}, model_id,
        TokenPrices(Decimal(input_) / M, Decimal(output) / M, None), 1_000_000, 16384,
        True, True, True, True, True, False, frozenset(), False,
        image_tokens=_catalog_rule(model_id),
    )  # fmt: skip


def png(width: int, height: int) -> str:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4
    return "data:image/png;base64," + base64.b64encode(head + os.urandom(64)).decode()


def jpeg(width: int, height: int) -> str:
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + os.urandom(3000)  # before the frame
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\0" * 9
    data = b"\xff\xd8" + exif + sof + b"\xff\xda" + os.urandom(64)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _image(url: str, detail: str | None = None) -> dict[str, Any]:
    image = {"url": url} | ({"detail": detail} if detail else {})
    return {"type": "image_url", "image_url": image}


def _body(*images: dict[str, Any]) -> dict[str, Any]:
    content = [{"type": "text", "text": "describe"}, *images]
    body = {"model": "x", "max_tokens": 1, "messages": [{"role": "user", "content": content}]}
    request_validate(body)
    return body


def _held(body: dict[str, Any], endpoint: EndpointInfo) -> Decimal:
    return reservation_max(body, [Candidate(endpoint, None, False)], prompt_token_bound(body))


def _priced(endpoint: EndpointInfo, prompt_tokens: int) -> Decimal:
    prices = endpoint.prices
    return money(prompt_tokens * prices.prompt + prices.completion)


def test_the_reviewers_repro_two_high_detail_images_on_gpt_4o_mini_are_held_in_full() -> None:
    """OpenAI documents 2,833 + 8 x 5,667 = 48,169 tokens for one 768x2048 high-detail image on
    gpt-4o-mini; each was held at 1,600 (3,232 tokens for the request: 1/30 of its count)."""
    endpoint = _endpoint("openai/gpt-4o-mini", "openai", "0.15", "0.60")
    for url in (png(768, 2048), jpeg(768, 2048), "https://example.com/a.png"):
        body = _body(_image(url, "high"), _image(url, "high"))

        assert _held(body, endpoint) >= _priced(endpoint, 2 * 48_169)


def test_a_low_detail_image_is_held_at_its_base_and_no_more_tiles() -> None:
    endpoint = _endpoint("openai/gpt-4o-mini", "openai", "0.15", "0.60")
    low = _held(_body(_image(png(768, 2048), "low")), endpoint)

    assert low >= _priced(endpoint, 2_833)  # held at 1,600 before
    assert low < _priced(endpoint, 2_833 + 5_667)


def test_a_small_image_holds_fewer_tiles_than_an_unknown_one() -> None:
    endpoint = _endpoint("openai/gpt-4o-mini", "openai", "0.15", "0.60")
    small = _held(_body(_image(png(500, 500), "high")), endpoint)  # one tile: 8,500

    assert _priced(endpoint, 8_500) <= small < _held(_body(_image("https://x/a.png")), endpoint)


@pytest.mark.parametrize(
    ("model_id", "size", "documented"),
    [
        ("openai/gpt-4o", (1024, 1024), 765),  # OpenAI's worked examples
        ("openai/gpt-4o", (2048, 4096), 1105),
        ("openai/gpt-4.1-nano", (1024, 1024), 2_520),  # 1,024 patches x 2.46
        ("openai/gpt-5-nano", None, 3_779),  # 1,536 patches x 2.46
        ("anthropic/claude-sonnet-4.5", (1092, 1092), 1_590),  # Anthropic's table
        ("anthropic/claude-sonnet-4.5", (4000, 4000), 1_600),
        ("google/gemini-2.5-flash", (300, 300), 258),
        ("google/gemini-2.5-flash", (1024, 1024), 4 * 258),
    ],
)
def test_each_formula_counts_at_least_what_its_provider_documents(
    model_id: str, size: tuple[int, int] | None, documented: int
) -> None:
    assert image_tokens(_catalog_rule(model_id), ImageAsk(size, "high")) >= documented


def test_no_known_size_counts_more_than_its_formulas_unknown_size_worst_case() -> None:
    """A known 8000x8000 made 121 Gemini tiles (unknown: 36), and a PNG header claiming
    2^31 x 2^31 about 2e15 tokens: a 402 for any request with a Gemini candidate."""
    from routing.image_tokens import UNDESCRIBED

    with CATALOG_FILE.open("rb") as handle:
        catalog = tomllib.load(handle)
    described = [m["image_tokens"] for m in catalog["models"] if m.get("image_tokens")]
    rules = {image_rule(d) for d in described} | {UNDESCRIBED}
    edge = 2**31
    sizes = [(w, h) for w in (1, 385, 768, 2048, 8000, edge) for h in (1, 384, 1024, 8000, edge)]
    for rule in rules:
        for detail in ("auto", "high", "low"):
            worst = image_tokens(rule, ImageAsk(None, detail))
            assert max(image_tokens(rule, ImageAsk(size, detail)) for size in sizes) <= worst
    gemini = _endpoint("google/gemini-2.5-flash", "gemini", "0.3", "2.5")
    hostile = png(edge, edge)
    assert data_url_image_size(hostile) == (edge, edge)
    assert _held(_body(_image(hostile)), gemini) == _held(_body(_image("https://x/a.png")), gemini)


def test_an_anthropic_image_of_unknown_size_is_held_at_anthropics_most() -> None:
    endpoint = _endpoint("anthropic/claude-sonnet-4.5", "anthropic", "3", "15")
    body = _body(_image("https://example.com/a.png"))

    assert _held(body, endpoint) >= _priced(endpoint, prompt_token_bound(body))
    assert image_tokens(endpoint.image_tokens, ImageAsk(None)) == 1_600


def test_image_sizes_are_read_from_png_jpeg_gif_and_webp_headers() -> None:
    gif = b"GIF89a" + struct.pack("<HH", 640, 480) + b"\0" * 8
    vp8x = b"RIFF\0\0\0\0WEBPVP8X" + b"\0" * 8 + (1999).to_bytes(3, "little")
    vp8x += (999).to_bytes(3, "little")

    assert data_url_image_size(png(768, 2048)) == (768, 2048)
    assert data_url_image_size(jpeg(3000, 200)) == (3000, 200)
    assert base64_image_size(base64.b64encode(gif).decode()) == (640, 480)
    assert base64_image_size(base64.b64encode(vp8x).decode()) == (2000, 1000)


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,iVBORw0KGgo=",  # the signature alone
        "data:image/png;base64,not base64 at all!",
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8\xff\xe0\x00\x01").decode(),
        "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8" + b"\xff\xe1\xff\xff").decode(),
        "data:image/png," + "x" * 100,
        "data:image/png;base64,",
    ],
)
def test_a_malformed_image_header_is_held_at_the_models_most(url: str) -> None:
    endpoint = _endpoint("openai/gpt-4o-mini", "openai", "0.15", "0.60")

    assert data_url_image_size(url) is None
    assert _held(_body(_image(url)), endpoint) >= _priced(endpoint, 48_169)


def test_random_bytes_never_raise_from_the_header_reader() -> None:
    draw = random.Random(7)
    for prefix in (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8L", b"GIF87a", b""):
        for _ in range(300):
            data = prefix + bytes(draw.randrange(256) for _ in range(draw.randrange(40)))
            size = base64_image_size(base64.b64encode(data).decode())
            assert size is None or (size[0] > 0 and size[1] > 0)


def test_a_catalog_description_that_is_no_formula_is_refused() -> None:
    for description in (
        {"kind": "pixels"},
        {"kind": "tiles", "bogus": 1},
        {"kind": "tiles", "base": -1},
        # A decimal count made an image's tokens a float, which a Decimal price cannot multiply.
        {"kind": "area", "most": 1600.0},
        {"kind": "gemini", "per_tile": 258.0, "max_tiles": 36},
        {"kind": "gemini", "per_tile": 258, "max_tiles": float("inf")},
        {"kind": "fixed", "tokens": True},
        {"kind": "patches", "multiplier": float("nan")},
        {"kind": "patches", "multiplier": float("inf")},
        {"kind": "patches", "multiplier": 0},
        {"kind": "patches", "multiplier": "1.62"},
        {"kind": "gemini", "per_tile": 258},  # no max_tiles: every image would count 0
    ):
        with pytest.raises(ValueError, match="image_tokens"):
            image_rule(description)
    assert image_rule({"kind": "patches", "multiplier": 1.62}).multiplier == 1.62


@pytest.mark.django_db
def test_a_decimal_count_saved_in_admin_holds_as_an_undescribed_formula() -> None:
    from routing.gateway.catalog_cache import _image_rule
    from routing.image_tokens import UNDESCRIBED
    from routing.models import Endpoint

    for description in ({"kind": "area", "most": 1600.0}, {"kind": "patches", "multiplier": 1e999}):
        assert _image_rule(Endpoint(image_tokens=description)) is UNDESCRIBED


def test_a_charge_far_above_its_hold_is_counted_and_still_charged(settings: Any) -> None:
    from prometheus_client import REGISTRY

    from billing.metering import UsageDraft, UsageFlag, price
    from routing.providers.base import Usage

    settings.BILLING_OVER_HOLD_ALERT_MULTIPLE = Decimal(4)
    prices = TokenPrices(Decimal(1) / M, Decimal(1) / M, None)
    counted = {"provider": "far-over-hold-test"}

    def count() -> float:
        name = "routerhub_charges_far_over_hold_total"
        return REGISTRY.get_sample_value(name, counted) or 0.0

    before = count()
    for held, expected in ((Decimal("0.0003"), 0.0), (Decimal("0.0002"), 1.0)):
        draft = UsageDraft("gen-x", 1, None, "success", provider=counted["provider"])
        cost = price(draft, prices, Usage(1000, 0), is_byok=False, held=held)  # 3.3x, then 5x

        assert cost == Decimal("0.001") and UsageFlag.OVER_HOLD in draft.flags
        assert count() - before == expected


@pytest.mark.django_db
def test_the_catalog_gives_every_vision_model_an_image_formula_and_marks_hidden_reasoning() -> None:
    from routing.gateway.catalog_cache import _endpoint_info
    from routing.models import Endpoint
    from routing.services import catalog_sync_file

    catalog_sync_file()
    mini = _endpoint_info(Endpoint.objects.get(model_id="openai/gpt-4o-mini"))

    assert (mini.image_tokens.base, mini.image_tokens.per_tile) == (2833, 5667)
    assert not mini.hidden_reasoning
    assert Endpoint.objects.get(model_id="openai/o4-mini").hidden_reasoning
    for row in Endpoint.objects.filter(supports_vision=True, provider__slug__in=["openai",
                                       "anthropic", "google"]):  # fmt: skip
        assert row.image_tokens, row


def test_an_endpoints_own_image_formula_wins_over_its_models() -> None:
    from routing.services import _metering_fields

    model_entry = {"id": "m", "image_tokens": {"kind": "fixed", "tokens": 10}}
    own = _metering_fields(model_entry) | _metering_fields(
        {"image_tokens": {"kind": "fixed", "tokens": 20}, "hidden_reasoning": True}
    )

    assert own == {"image_tokens": {"kind": "fixed", "tokens": 20}, "hidden_reasoning": True}
    with pytest.raises(ValueError, match="image_tokens"):
        _metering_fields({"image_tokens": {"kind": "pixels"}})


@pytest.mark.django_db
@pytest.mark.parametrize("speed", [40_000, -1, 12.5, "fast"])
def test_an_output_speed_out_of_its_columns_range_is_refused_at_sync(speed: object) -> None:
    """40,000 failed the sync with a database error (a smallint column) instead of this one."""
    from routing.services import catalog_sync
    from tests.routing.world import endpoint, model, provider

    entry = endpoint("test/fast", "fast-provider", "fast", output_tokens_per_second=speed)
    data = {"providers": [provider("fast-provider", "openai", "https://up.example")],
            "models": [model("test/fast")], "endpoints": [entry]}  # fmt: skip

    with pytest.raises(ValueError, match="output_tokens_per_second"):
        catalog_sync(data=data)
