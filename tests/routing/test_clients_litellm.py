"""litellm as a client of the in-process gateway: embeddings, the Responses API, and an
``openrouter/`` model pointed at ``/api/v1`` with a fallback list. litellm reads its bundled
model cost map (``LITELLM_LOCAL_MODEL_COST_MAP``) and sends no telemetry."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import litellm
import pytest

from routing.fake_upstream.answers import answer_text
from routing.fake_upstream.embeddings import embedding_vector
from tests.routing.test_gateway_embeddings import _embedding_catalog
from tests.routing.world import World

litellm.telemetry = False


def test_embedding(world: World) -> None:
    _embedding_catalog(world)
    response = litellm.embedding(model="openai/test/embed", input=["first text"],
                                 api_base=f"{world.gateway_url}/v1", api_key=world.key)  # fmt: skip

    vector = response.data[0]["embedding"]
    assert vector == pytest.approx(
        embedding_vector("text-embedding-3-small", "first text"), rel=1e-6
    )


def test_responses(world: World) -> None:
    response = litellm.responses(model="openai/test/gpt", input="What is 6*7?",
                                 api_base=f"{world.gateway_url}/v1", api_key=world.key)  # fmt: skip

    text = response.output[0].content[0].text
    assert text == answer_text("gpt-4o-mini", "What is 6*7?")


def test_openrouter_model_with_a_fallback_list(world: World) -> None:
    response = litellm.completion(
        model="openrouter/nobody/unknown",
        models=["test/gpt"],
        messages=[{"role": "user", "content": "What is 6*7?"}],
        api_base=f"{world.gateway_url}/api/v1",
        api_key=world.key,
    )

    assert response.choices[0].message.content == answer_text("gpt-4o-mini", "What is 6*7?")
    assert world.last_upstream("/v1/chat/completions")["body"]["model"] == "gpt-4o-mini"


def test_openrouter_stream(world: World) -> None:
    stream = litellm.completion(model="openrouter/test/claude", stream=True,
                                messages=[{"role": "user", "content": "Hi"}],
                                api_base=f"{world.gateway_url}/api/v1", api_key=world.key)  # fmt: skip

    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == answer_text("claude-sonnet-4-5", "Hi")


def test_an_anthropic_model_through_messages_streamed_with_tools(world: World) -> None:
    ask = {"api_base": world.gateway_url, "api_key": world.key}  # litellm adds /v1/messages
    whole = litellm.completion(model="anthropic/test/claude",
                               messages=[{"role": "user", "content": "What is 6*7?"}], **ask)  # fmt: skip
    chunks = list(litellm.completion(model="anthropic/test/gpt", stream=True, tools=[{
        "type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}], **ask))  # fmt: skip

    assert whole.choices[0].message.content == answer_text("claude-sonnet-4-5", "What is 6*7?")
    assert world.last_upstream("/v1/chat/completions")  # served through /v1/messages
    arguments = "".join(
        call.function.arguments or ""
        for chunk in chunks
        for call in chunk.choices[0].delta.tool_calls or []
    )
    assert arguments == '{"city":"Paris"}'


def test_an_anthropic_model_given_the_v1_base_url_is_a_404_naming_the_fix(world: World) -> None:
    with pytest.raises(litellm.NotFoundError) as caught:
        litellm.completion(model="anthropic/test/claude", messages=[{"role": "user", "content": "hi"}],
                           api_base=f"{world.gateway_url}/v1", api_key=world.key)  # fmt: skip

    assert "The route is /v1/messages" in str(caught.value)
    assert "base URL without /v1" in str(caught.value)
