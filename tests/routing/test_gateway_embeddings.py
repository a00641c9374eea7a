"""``POST /v1/embeddings`` with the official openai SDK, through the OpenAI and Gemini formats."""

from __future__ import annotations

import base64
import struct
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from billing.models import LedgerEntry, Reservation, UsageRecord
from routing.fake_upstream.answers import count_tokens
from routing.fake_upstream.embeddings import embedding_vector
from tests.routing.world import World, base_catalog, endpoint, model


def _embedding_catalog(
    world: World,
    first_upstream: str = "text-embedding-3-small",
    second_upstream: str = "gemini-embedding-001",
) -> None:
    """test/embed: OpenAI format first ($0.02/M), Gemini format second ($0.15/M)."""
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/embed", ["embeddings"]), model("test/embed-g", ["embeddings"])]
    data["endpoints"] += [
        endpoint("test/embed", "fake-openai", first_upstream, "0.02", "0"),
        endpoint("test/embed", "fake-gemini", second_upstream, "0.15", "0"),
        endpoint("test/embed-g", "fake-gemini", "gemini-embedding-001", "0.15", "0"),
    ]
    world.catalog(data)


def _post(world: World, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}/v1/embeddings", json=body, timeout=10,
                      headers={"authorization": f"Bearer {world.key}"})  # fmt: skip


def _float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def test_sdk_embeds_a_string_and_a_list_with_its_default_base64_encoding(world: World) -> None:
    _embedding_catalog(world)
    client = world.openai_client()

    one = client.embeddings.create(model="test/embed", input="hello world")
    many = client.embeddings.create(model="test/embed", input=["first text", "second, longer text"])

    assert one.object == "list" and one.model == "test/embed"
    assert one.data[0].embedding == _float32(
        embedding_vector("text-embedding-3-small", "hello world")
    )
    assert [d.index for d in many.data] == [0, 1]
    assert many.data[1].embedding == _float32(
        embedding_vector("text-embedding-3-small", "second, longer text")
    )
    assert many.usage.prompt_tokens == count_tokens("first text") + count_tokens(
        "second, longer text"
    )
    assert many.usage.total_tokens == many.usage.prompt_tokens
    sent = world.last_upstream("/v1/embeddings")["body"]
    # Floats upstream whatever the client asked: the gateway does the base64 encoding.
    assert sent == {"model": "text-embedding-3-small", "encoding_format": "float",
                    "input": ["first text", "second, longer text"]}  # fmt: skip


def test_float_encoding_and_dimensions_reach_the_provider(world: World) -> None:
    _embedding_catalog(world)

    result = world.openai_client().embeddings.create(
        model="test/embed", input=["a cat"], encoding_format="float", dimensions=8
    )

    assert result.data[0].embedding == embedding_vector("text-embedding-3-small", "a cat", 8)
    assert world.last_upstream("/v1/embeddings")["body"]["dimensions"] == 8
    raw = _post(world, {"model": "test/embed", "input": "a cat", "encoding_format": "base64",
                        "dimensions": 4}).json()  # fmt: skip
    decoded = struct.unpack("<4f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == _float32(embedding_vector("text-embedding-3-small", "a cat", 4))


def test_embeddings_are_billed_per_input_token_at_the_catalog_price(world: World) -> None:
    _embedding_catalog(world)
    texts = ["the quick brown fox", "jumps over the lazy dog"] * 50

    result = world.openai_client().embeddings.create(model="test/embed", input=texts)

    tokens = sum(count_tokens(t) for t in texts)
    generation_id = result.model_extra["id"]
    record = world.usage_record(generation_id)
    assert (record.status, record.model, record.provider) == (
        "succeeded",
        "test/embed",
        "fake-openai",
    )
    assert (record.prompt_tokens, record.completion_tokens) == (tokens, 0)
    assert record.cost == Decimal(tokens) * Decimal("0.02") / 1_000_000
    assert result.usage.model_extra["cost"] == pytest.approx(float(record.cost))
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}").amount == -record.cost
    # The hold was every UTF-8 byte a token at the dearest candidate's price (the Gemini
    # fallback's), released at settlement.
    hold = Reservation.objects.get(generation_id=generation_id)
    assert hold.amount == Decimal(sum(len(t) for t in texts)) * Decimal("0.15") / 1_000_000
    assert hold.amount >= record.cost and hold.state == "settled"


def test_a_failing_provider_falls_back_to_the_gemini_format_billed_on_an_estimate(
    world: World,
) -> None:
    _embedding_catalog(world, first_upstream="text-embedding-3-small@status=503")

    result = world.openai_client().embeddings.create(
        model="test/embed", input=["one document", "another"], encoding_format="float"
    )

    assert result.model_extra["provider"] == "fake-gemini"
    assert [(f["provider"], f["error"]) for f in result.model_extra["fallbacks"]] == [
        ("fake-openai", "status_503")
    ]
    assert result.data[1].embedding == embedding_vector("gemini-embedding-001", "another")
    sent = world.last_upstream(":batchEmbedContents")
    assert sent["path"] == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent["body"]["requests"][0] == {"model": "models/gemini-embedding-001",
                                           "content": {"parts": [{"text": "one document"}]}}  # fmt: skip
    assert sent["headers"]["x-goog-api-key"] == "***0003"
    # Gemini's batch API reports no token count: ≈4 ASCII characters a token, flagged estimated.
    record = world.usage_record(result.model_extra["id"])
    assert record.prompt_tokens == 3 + 2  # ceil(12 / 4) + ceil(7 / 4)
    assert "usage_estimated" in record.flags
    assert record.cost == Decimal(5) * Decimal("0.15") / 1_000_000


def test_token_arrays_go_to_openai_format_providers_only(world: World) -> None:
    _embedding_catalog(world)

    # What LangChain's OpenAIEmbeddings sends by default: tiktoken ids, base64 encoding.
    served = world.openai_client().embeddings.create(model="test/embed", input=[[1, 2, 3], [4, 5]])
    refused = _post(world, {"model": "test/embed-g", "input": [1, 2, 3]})

    assert served.model_extra["provider"] == "fake-openai" and len(served.data) == 2
    assert served.data[1].embedding == _float32(embedding_vector("text-embedding-3-small", "4 5"))
    assert served.usage.prompt_tokens == 5
    assert world.last_upstream("/v1/embeddings")["body"]["input"] == [[1, 2, 3], [4, 5]]
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "input"
    assert "token arrays" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"model": "test/embed"}, "input", "input is required"),
        ({"model": "test/embed", "input": []}, "input", "input must be"),
        ({"model": "test/embed", "input": ["ok", ""]}, "input", "input[1] is an empty string"),
        ({"model": "test/embed", "input": ["ok", 3]}, "input", "input[1]"),
        ({"model": "test/embed", "input": ["x"] * 2049}, "input", "at most 2048"),
        ({"model": "test/embed", "input": [[1] * 300_001]}, "input", "at most 300000"),
        ({"model": "test/embed", "input": "x", "encoding_format": "int8"}, "encoding_format", "'base64'"),
        ({"model": "test/embed", "input": "x", "dimensions": 0}, "dimensions", "dimensions must"),
        ({"model": "test/gpt", "input": "x"}, "model", "not an embedding model"),
        ({"input": "x"}, "model", "model is required"),
    ],
)  # fmt: skip
def test_bad_embedding_requests_get_a_400_naming_the_field_and_cost_nothing(
    world: World, body: dict[str, Any], param: str, words: str
) -> None:
    _embedding_catalog(world)

    response = _post(world, body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert not world.upstream_requests()
    assert not UsageRecord.objects.exists() and not Reservation.objects.exists()


def test_chat_never_plans_an_embedding_model(world: World) -> None:
    _embedding_catalog(world)

    with pytest.raises(openai.BadRequestError) as raised:
        world.openai_client().chat.completions.create(
            model="test/embed", messages=[{"role": "user", "content": "hi"}]
        )

    assert "is an embedding model" in raised.value.message
    assert "/v1/embeddings" in raised.value.message
    assert not world.upstream_requests()


def test_demo_embedding_model_serves_deterministic_unit_vectors_through_both_formats(
    world: World,
) -> None:
    from routing.demo import demo_upstream_register

    demo_upstream_register(world.fake_url)
    world.catalog({})  # clear the gateway's catalog cache
    client = world.openai_client()

    first = client.embeddings.create(model="demo/embed", input="same text", encoding_format="float")
    again = client.embeddings.create(model="demo/embed", input="same text", encoding_format="float")
    via_gemini = client.embeddings.create(
        model="demo/embed", input="same text", encoding_format="float",
        extra_body={"provider": {"order": ["demo-gemini"]}},
    )  # fmt: skip

    vector = first.data[0].embedding
    assert vector == again.data[0].embedding and len(vector) == 1536
    assert sum(v * v for v in vector) == pytest.approx(1.0)
    assert via_gemini.model_extra["provider"] == "demo-gemini"
    assert via_gemini.data[0].embedding == embedding_vector("demo-embed", "same text")


def test_models_list_marks_embedding_models(world: World) -> None:
    _embedding_catalog(world)

    models = httpx.get(f"{world.gateway_url}/v1/models", timeout=10).json()["data"]

    embed = next(m for m in models if m["id"] == "test/embed")
    chat = next(m for m in models if m["id"] == "test/gpt")
    assert all(p["capabilities"]["embeddings"] for p in embed["providers"])
    assert not chat["providers"][0]["capabilities"]["embeddings"]
    assert "dimensions" in embed["supported_parameters"]
    assert "tools" not in embed["supported_parameters"]


def test_router_auto_never_ranks_an_embedding_model(world: World) -> None:
    _embedding_catalog(world)  # test/embed is the catalog's cheapest model
    client = world.openai_client()

    completion = client.chat.completions.create(
        model="router/auto",
        messages=[{"role": "user", "content": "Summarise the history of tea."}],
        extra_body={"router": {"tradeoff": 1}},  # cheapest first
    )

    ranked = [r["model"] for r in completion.model_extra["routing"]["ranked"]]
    assert ranked and not {"test/embed", "test/embed-g"} & set(ranked)
    assert completion.model == ranked[0] and completion.choices[0].message.content


def test_every_provider_failing_is_a_502_that_charges_nothing_and_releases_the_hold(
    world: World,
) -> None:
    _embedding_catalog(world, "text-embedding-3-small@status=500", "gemini-embedding-001@malformed")

    response = _post(world, {"model": "test/embed", "input": "hello"})

    assert response.status_code == 502
    error = response.json()["error"]
    assert [a["error"] for a in error["metadata"]["attempts"]] == [
        "status_500",
        "malformed_response",
    ]
    record = world.usage_record(error["metadata"]["generation_id"])
    assert (record.status, record.cost, record.prompt_tokens) == ("failed", 0, 0)
    hold = Reservation.objects.get(generation_id=record.generation_id)
    assert hold.state != "held"
    assert not LedgerEntry.objects.filter(
        idempotency_key=f"usage:{record.generation_id}", amount__lt=0
    ).exists()


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/completions"])
def test_only_inference_keys_may_embed_or_complete(world: World, path: str) -> None:
    from accounts.models import KeyScope

    body = {"model": "test/embed", "input": "hi", "prompt": "hi"}
    url = f"{world.gateway_url}{path}"
    management = world.key_for(scope=KeyScope.MANAGE)

    anonymous = httpx.post(url, json=body, timeout=10)
    managing = httpx.post(
        url, json=body, timeout=10, headers={"authorization": f"Bearer {management}"}
    )

    assert anonymous.status_code == 401 and managing.status_code == 403
    assert managing.json()["error"]["type"] == "forbidden"
    assert not world.upstream_requests()


def test_a_model_no_provider_can_embed_is_a_permanent_503_without_retry_after(
    world: World,
) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/embed-a", ["embeddings"]))
    data["endpoints"].append(endpoint("test/embed-a", "fake-anthropic", "claude-embed", "0.1", "0"))
    world.catalog(data)

    response = _post(world, {"model": "test/embed-a", "input": "hello"})

    assert response.status_code == 503, response.text
    assert "embeddings API" in response.json()["error"]["message"]
    assert "retry-after" not in response.headers
    assert response.headers["x-should-retry"] == "false"
    assert not world.upstream_requests()


@pytest.mark.parametrize(
    "extra",
    [{"tools": 5}, {"tools": ["a"]}, {"tools": [{"type": "browser_search"}]}],
)  # fmt: skip
def test_chat_only_fields_are_ignored_by_embeddings(world: World, extra: dict[str, Any]) -> None:
    """Embeddings send no tools upstream: chat's tool refusals are not theirs. Before, a stray
    ``tools`` was a 500. (A ``service_tier`` follows chat's rules: test_service_tier_served.)"""
    _embedding_catalog(world)

    answer = _post(world, {"model": "test/embed", "input": "hello"} | extra)

    assert answer.status_code == 200, answer.text
    sent = world.last_upstream("/v1/embeddings")["body"]
    assert sent == {
        "model": "text-embedding-3-small",
        "input": ["hello"],
        "encoding_format": "float",
    }
