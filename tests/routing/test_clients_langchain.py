"""langchain-openai against the in-process gateway: ``ChatOpenAI`` in Responses mode (plain,
streamed, tools) and ``OpenAIEmbeddings``. Nothing leaves the machine (no tracing; the
embeddings' tiktoken length check, which downloads encodings, is off)."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from routing.fake_upstream.answers import answer_text
from routing.fake_upstream.embeddings import embedding_vector
from tests.routing.test_gateway_embeddings import _embedding_catalog
from tests.routing.world import World, base_catalog, endpoint, model


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def chat_for(world: World, **options: object) -> ChatOpenAI:
    return ChatOpenAI(model="test/gpt", base_url=f"{world.gateway_url}/v1", api_key=world.key,
                      max_retries=0, use_responses_api=True, **options)  # type: ignore[arg-type]  # fmt: skip


def test_chat_openai_in_responses_mode_plain_and_streamed(world: World) -> None:
    chat = chat_for(world)
    answer = chat.invoke("What is 6*7?")
    streamed = "".join(chunk.text for chunk in chat.stream("Tell me about tea"))

    assert answer.text == answer_text("gpt-4o-mini", "What is 6*7?")
    assert streamed == answer_text("gpt-4o-mini", "Tell me about tea")
    assert world.upstream_requests("/v1/chat/completions")  # served through /v1/responses
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0


def test_chat_openai_in_responses_mode_calls_tools(world: World) -> None:
    answer = chat_for(world).bind_tools([get_weather]).invoke("What is the weather in Paris?")

    (call,) = answer.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


def test_openai_embeddings(world: World) -> None:
    _embedding_catalog(world)
    embeddings = OpenAIEmbeddings(model="test/embed", base_url=f"{world.gateway_url}/v1",
                                  api_key=world.key, max_retries=0,  # type: ignore[arg-type]
                                  check_embedding_ctx_length=False)  # fmt: skip

    documents = embeddings.embed_documents(["first text", "second text"])
    query = embeddings.embed_query("first text")

    expected = embedding_vector("text-embedding-3-small", "first text")
    assert documents[0] == pytest.approx(expected, rel=1e-6) and query == documents[0]
    assert len(documents) == 2


def test_openai_embeddings_by_openais_own_model_name(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("openai/text-embedding-3-small", ["embeddings"]))
    data["endpoints"].append(endpoint("openai/text-embedding-3-small", "fake-openai",
                                      "text-embedding-3-small", "0.02", "0"))  # fmt: skip
    world.catalog(data)
    # OpenAI's own name, as RAG code written for OpenAI names it: no catalog author.
    embeddings = OpenAIEmbeddings(model="text-embedding-3-small", base_url=f"{world.gateway_url}/v1",
                                  api_key=world.key, max_retries=0,  # type: ignore[arg-type]
                                  check_embedding_ctx_length=False)  # fmt: skip

    vector = embeddings.embed_query("first text")  # was a 404 "Unknown model"

    expected = embedding_vector("text-embedding-3-small", "first text")
    assert vector == pytest.approx(expected, rel=1e-6)
    assert world.last_upstream("/v1/embeddings")["body"]["model"] == "text-embedding-3-small"


def test_chat_openai_in_chat_completions_mode_structured_streamed_tools_and_usage(
    world: World,
) -> None:
    from pydantic import BaseModel

    class Street(BaseModel):
        name: str

    class City(BaseModel):
        name: str
        streets: list[Street]

    chat = ChatOpenAI(model="test/gemini", base_url=f"{world.gateway_url}/v1", api_key=world.key,
                      max_retries=0, stream_usage=True)  # type: ignore[arg-type]  # fmt: skip
    city = chat.with_structured_output(City).invoke("Invent a city")
    chunks = list(chat.bind_tools([get_weather]).stream("What is the weather in Paris?"))
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk

    assert isinstance(city, City) and isinstance(city.streets[0], Street)
    assert whole.tool_calls[0]["args"] == {"city": "Paris"}  # type: ignore[attr-defined]
    assert whole.usage_metadata is not None and whole.usage_metadata["total_tokens"] > 0
