"""The official ``anthropic`` SDK against ``/v1/messages``, served by any adapter."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from pydantic import BaseModel

from accounts.models import KeyScope
from billing.models import UsageRecord
from routing.fake_upstream.answers import answer_text
from tests.routing.world import World

LOOKUP_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client_for(world: World, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=world.gateway_url, api_key=key or world.key, max_retries=0)


@pytest.mark.parametrize(("model", "upstream_model", "path"), [
    ("test/gpt", "gpt-4o-mini", "/v1/chat/completions"),
    ("test/claude", "claude-sonnet-4-5", "/v1/messages"),
    ("test/gemini", "gemini-2.5-flash", ":generateContent"),
])  # fmt: skip
def test_messages_are_served_by_any_adapter(
    world: World, model: str, upstream_model: str, path: str
) -> None:
    message = client_for(world).messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Tell me about owls"}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == answer_text(upstream_model, "Tell me about owls")
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("gen-") and message.model == model
    assert message.usage.output_tokens > 0
    assert world.last_upstream(path)


def test_messages_translate_to_the_openai_wire_format(world: World) -> None:
    client_for(world).messages.create(
        model="test/gpt", max_tokens=64, system="Be brief.", stop_sequences=["END"],
        messages=[{"role": "user", "content": "Hello"}],
    )  # fmt: skip

    assert world.last_upstream("/v1/chat/completions")["body"] == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 64,
        "stop": ["END"],
    }


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_streaming_messages_from_any_adapter(world: World, model: str) -> None:
    with client_for(world).messages.stream(
        model=model, max_tokens=300, messages=[{"role": "user", "content": "Describe the sea"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["test/gpt", "test/claude", "test/gemini"])
def test_tool_use_through_messages(world: World, model: str) -> None:
    client = client_for(world)
    question = {"role": "user", "content": "What is the weather in Madrid?"}

    first = client.messages.create(
        model=model, max_tokens=200, tools=[LOOKUP_TOOL], messages=[question]
    )
    tool_use = next(block for block in first.content if block.type == "tool_use")
    second = client.messages.create(
        model=model, max_tokens=200, tools=[LOOKUP_TOOL],
        messages=[question, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}],
    )  # fmt: skip

    assert first.stop_reason == "tool_use"
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "Madrid"}
    assert "sunny" in second.content[0].text


def test_streamed_tool_use_accumulates_its_input(world: World) -> None:
    with client_for(world).messages.stream(
        model="test/gpt",
        max_tokens=200,
        tools=[LOOKUP_TOOL],
        messages=[{"role": "user", "content": "Weather in Kyiv?"}],
    ) as stream:
        final = stream.get_final_message()

    tool_use = final.content[-1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Kyiv"}
    assert final.stop_reason == "tool_use"


def test_bearer_authorization_also_works_on_messages(world: World) -> None:
    client = anthropic.Anthropic(
        base_url=world.gateway_url, auth_token=world.key, api_key=None, max_retries=0
    )

    message = client.messages.create(
        model="test/gpt", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )

    assert message.content


def test_bad_key_is_an_anthropic_style_authentication_error(world: World) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client_for(world, key="rh-live-not-a-real-key").messages.create(
            model="test/gpt", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )

    body = caught.value.body
    assert isinstance(body, dict)
    assert (
        body["type"] == "error"
        and body["error"]["type"] == "authentication_error"
        and body["error"]["routerhub_type"] == "unauthorized"
        and body["error"]["code"] == 401
        and body["request_id"] == caught.value.response.headers["request-id"]
    )


def test_count_tokens_answers_an_estimate_without_billing(world: World) -> None:
    client = client_for(world)
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hello " * 300}]

    count = client.messages.count_tokens(model="test/claude", system="Be brief.", messages=messages)
    raw = client.messages.with_raw_response.count_tokens(model="test/claude", messages=messages)

    assert 450 <= count.input_tokens <= 600  # ≈4 ASCII characters a token (central)
    assert raw.headers["x-routerhub-token-count"] == "estimate"
    assert world.upstream_requests() == []  # nothing forwarded, so nothing billed
    assert not UsageRecord.objects.filter(organization=world.organization).exists()


def test_count_tokens_refuses_a_bad_key_and_bad_input_like_messages(world: World) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        client_for(world, key="rh-live-not-a-real-key").messages.count_tokens(
            model="test/claude", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.BadRequestError) as caught:
        client_for(world).messages.count_tokens(model="test/claude", messages="hi")  # type: ignore[arg-type]

    with pytest.raises(anthropic.NotFoundError) as unknown:
        client_for(world).messages.count_tokens(
            model="nobody/nothing", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.PermissionDeniedError):
        client_for(world, world.key_for(allowed_models=["test/gpt"])).messages.count_tokens(
            model="test/claude", messages=[{"role": "user", "content": "hi"}]
        )

    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
    assert "messages" in body["error"]["message"]
    assert "nobody/nothing" in unknown.value.message


THINKING = {"type": "enabled", "budget_tokens": 1024}


def test_thinking_is_forwarded_and_its_signed_block_comes_back(world: World) -> None:
    message = client_for(world).messages.create(
        model="test/claude", max_tokens=2000, thinking=THINKING,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Tell me about owls"}],
    )  # fmt: skip

    assert world.last_upstream("/v1/messages")["body"]["thinking"] == THINKING
    thinking, text = message.content
    assert thinking.type == "thinking" and "owls" in thinking.thinking and thinking.signature
    assert text.type == "text" and text.text == answer_text(
        "claude-sonnet-4-5", "Tell me about owls"
    )


def test_thinking_streams_as_thinking_and_signature_deltas(world: World) -> None:
    with client_for(world).messages.stream(
        model="test/claude",
        max_tokens=2000,
        thinking=THINKING,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": "Describe the sea"}],
    ) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()

    assert {"thinking_delta", "signature_delta", "text_delta"} <= set(kinds)
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    assert final.content[1].type == "text" and final.content[1].text


def test_signed_thinking_goes_back_upstream_on_the_next_turn(world: World) -> None:
    client = client_for(world)
    question = {"role": "user", "content": "What is the weather in Madrid?"}
    first = client.messages.create(
        model="test/claude", max_tokens=2000, thinking=THINKING, tools=[LOOKUP_TOOL],  # type: ignore[arg-type]
        messages=[question],  # type: ignore[list-item]
    )  # fmt: skip
    tool_use = next(block for block in first.content if block.type == "tool_use")

    client.messages.create(
        model="test/claude", max_tokens=2000, thinking=THINKING, tools=[LOOKUP_TOOL],  # type: ignore[arg-type]
        messages=[question, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}],
    )  # fmt: skip

    sent = world.last_upstream("/v1/messages")["body"]["messages"][1]["content"]
    assert sent[0] == first.content[0].model_dump()  # the thinking block, signature and all
    assert sent[1]["type"] == "tool_use"


def test_a_claude_conversation_with_thinking_continues_on_another_provider(world: World) -> None:
    client = client_for(world)
    question: Any = {"role": "user", "content": "Tell me about owls"}
    first = client.messages.create(
        model="test/claude", max_tokens=2000, thinking=THINKING, messages=[question]
    )

    client.messages.create(
        model="test/gpt", max_tokens=200,
        messages=[question, {"role": "assistant", "content": first.content}, {"role": "user", "content": "More"}],
    )  # fmt: skip

    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": first.content[1].text}  # type: ignore[union-attr]


class Owl(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize(("model", "path"), [
    ("test/claude", "/v1/messages"),
    ("test/gpt", "/v1/chat/completions"),
])  # fmt: skip
def test_messages_parse_returns_the_structured_object(world: World, model: str, path: str) -> None:
    message = client_for(world).messages.parse(
        model=model, max_tokens=300, output_format=Owl,
        messages=[{"role": "user", "content": "Invent an owl"}],
    )  # fmt: skip

    owl = message.parsed_output
    assert isinstance(owl, Owl) and owl.name and isinstance(owl.age, int)
    sent = world.last_upstream(path)["body"]
    if path == "/v1/messages":  # natively: structured outputs, no forced tool
        assert sent["output_config"]["format"]["type"] == "json_schema" and "tools" not in sent
    else:
        assert sent["response_format"]["json_schema"]["schema"]["required"] == ["name", "age"]


def test_request_id_header_on_answers_and_errors(world: World) -> None:
    client = client_for(world)
    raw = client.messages.with_raw_response.create(
        model="test/gpt", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(
            model="nobody/nothing", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )

    assert raw.request_id and raw.request_id == raw.headers["x-request-id"]
    assert caught.value.request_id == caught.value.response.headers["x-request-id"]
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"


def _error_for(world: World, status: int, settings: Any) -> anthropic.APIStatusError:
    """Provoke ``status`` on /v1/messages the way a client would meet it."""
    from tests.factories import key_make, organization_make

    key, content, extra = world.key, "hi", {}
    if status == 401:
        key = "rh-live-not-a-real-key"
    elif status == 402:
        key = key_make(organization_make(name="Broke"))
    elif status == 403:
        key = world.key_for(scope=KeyScope.MANAGE)
    elif status == 413:
        settings.GATEWAY_MAX_BODY_BYTES, content = 1000, "x" * 2000
    elif status == 429:
        key = world.key_for(tpm=30)
        client_for(world, key).messages.create(
            model="test/gpt", max_tokens=100,
            messages=[{"role": "user", "content": "Tell me everything about tea"}],
        )  # fmt: skip
    elif status == 503:  # no platform credentials for the model's provider
        settings.PROVIDER_API_KEYS = {}
    messages: Any = "not a list" if status == 400 else [{"role": "user", "content": content}]
    with pytest.raises(anthropic.APIStatusError) as caught:
        client_for(world, key).messages.create(
            model="test/gpt", max_tokens=100, messages=messages, extra_body=extra
        )
    return caught.value


@pytest.mark.parametrize(("status", "error_class", "anthropic_type"), [
    (400, anthropic.BadRequestError, "invalid_request_error"),
    (401, anthropic.AuthenticationError, "authentication_error"),
    (402, anthropic.APIStatusError, "billing_error"),
    (403, anthropic.PermissionDeniedError, "permission_error"),
    (413, anthropic.APIStatusError, "request_too_large"),
    (429, anthropic.RateLimitError, "rate_limit_error"),
    (503, anthropic.InternalServerError, "overloaded_error"),
])  # fmt: skip
def test_errors_carry_anthropic_type_names(
    world: World,
    settings: Any,
    status: int,
    error_class: type[anthropic.APIStatusError],
    anthropic_type: str,
) -> None:
    error = _error_for(world, status, settings)

    assert isinstance(error, error_class) and error.status_code == status
    assert isinstance(error.body, dict) and error.body["error"]["type"] == anthropic_type
    assert error.body["type"] == "error" and error.body["request_id"] == error.request_id


def test_routed_answers_carry_the_routing_object(world: World) -> None:
    client = client_for(world)
    ask = {
        "model": "router/auto",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }

    message = client.messages.create(**ask)  # type: ignore[call-overload]
    with client.messages.stream(**ask) as stream:
        start = next(e for e in stream if e.type == "message_start")

    routing = (message.model_extra or {})["routing"]
    assert routing["chosen"] == message.model and routing["ranked"]
    assert (start.message.model_extra or {})["routing"]["chosen"] == routing["chosen"]


@pytest.mark.parametrize("model", ["test/gpt", "test/gemini"])
def test_thinking_for_another_provider_is_dropped_and_the_header_says_so(
    world: World, model: str
) -> None:
    client = client_for(world)
    ask: Any = {"model": model, "max_tokens": 2000, "thinking": THINKING,
                "output_config": {"effort": "high"}, "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip

    whole = client.messages.with_raw_response.create(**ask)
    with client.messages.with_streaming_response.create(**ask, stream=True) as streamed:
        streamed.read()
    plain = client.messages.with_raw_response.create(
        **ask | {"thinking": {"type": "disabled"}, "output_config": {}}
    )

    for response in (whole, streamed):
        assert response.headers["x-routerhub-dropped"] == "thinking, output_config.effort"
    assert "x-routerhub-dropped" not in plain.headers
    sent = world.last_upstream()["body"]
    assert "thinking" not in str(sent) and "effort" not in str(sent)
    assert whole.parse().content[0].type == "text"


def test_the_fake_upstream_speaks_anthropic_thinking_to_the_sdk_itself(world: World) -> None:
    fake = anthropic.Anthropic(base_url=world.fake_url, api_key="sk-ant-fake", max_retries=0)
    ask: Any = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}

    message = fake.messages.create(**ask, max_tokens=2000, thinking=THINKING)
    with fake.messages.stream(**ask, max_tokens=2000, thinking=THINKING) as stream:
        streamed = stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError) as caught:
        fake.messages.create(**ask, max_tokens=1024, thinking=THINKING)

    assert [b.type for b in message.content] == ["thinking", "text"]
    assert streamed.content[0] == message.content[0]  # signature included
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"


def test_count_tokens_reads_a_model_name_as_messages_does(world: World) -> None:
    client = client_for(world)
    messages: Any = [{"role": "user", "content": "Hello"}]

    served = client.messages.create(model="claude", max_tokens=20, messages=messages)
    count = client.messages.count_tokens(model="claude", messages=messages)  # was a 404

    assert served.model == "test/claude"
    assert (
        count.input_tokens
        == client.messages.count_tokens(model="test/claude", messages=messages).input_tokens
    )


def test_a_streamed_answer_from_an_openai_style_provider_starts_with_the_prompt_estimate(
    world: World,
) -> None:
    """An OpenAI-style provider counts the prompt only at the end: ``message_start`` carries the
    gateway's prompt estimate (before, 0) and ``message_delta`` the provider's count, which the
    anthropic SDK keeps in the final message."""
    client = client_for(world)
    ask: Any = {"model": "test/gpt", "max_tokens": 100,
                "messages": [{"role": "user", "content": "Tell me about owls " * 20}]}  # fmt: skip

    counted = client.messages.create(**ask).usage.input_tokens
    with client.messages.stream(**ask) as stream:
        events = list(stream)
        final = stream.get_final_message()

    start = next(e for e in events if e.type == "message_start")
    delta = next(e for e in events if e.type == "message_delta")
    assert counted > 20
    assert start.message.usage.input_tokens > 20  # the estimate: near the count, never 0
    assert delta.usage.input_tokens == final.usage.input_tokens == counted


def test_a_streamed_image_prompt_starts_with_the_estimate_billing_uses(world: World) -> None:
    """``message_start``'s estimate counts an image at the endpoint's formula for its size, as
    billing estimates it (``usage_estimate.prompt_estimate_at``), not the hold's flat 1,600."""
    client = client_for(world)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                          "data": "iVBORw0KGgo="}}  # fmt: skip
    ask: Any = {"model": "test/gpt", "max_tokens": 100, "messages": [
        {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}]}  # fmt: skip

    with client.messages.stream(**ask) as stream:
        start = next(e for e in stream if e.type == "message_start")
        list(stream)

    # gpt-4o-mini counts an image as at least 2,833 tokens (its low-detail base); before, the
    # flat 1,600 plus the text: 1,611.
    assert start.message.usage.input_tokens > 2833
