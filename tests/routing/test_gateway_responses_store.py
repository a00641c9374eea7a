"""Stored ``/v1/responses`` answers: ``store``, ``previous_response_id``, ``GET`` and ``DELETE
/v1/responses/{id}``, per organization, with a retention and a size limit (openai SDK)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import openai
import pytest
from django.test import override_settings
from django.utils import timezone

from routing.fake_upstream.answers import answer_text
from routing.gateway.responses_store import responses_purge
from routing.models import StoredResponse
from tests.factories import key_make, organization_make
from tests.routing.test_gateway_responses import WEATHER_TOOL
from tests.routing.world import World, world_make


def test_a_response_is_stored_by_default_and_retrievable_then_deleted(world: World) -> None:
    client = world.openai_client()
    created = client.responses.create(model="test/gpt", input="What is 6*7?")

    assert created.store is True
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_store_false_is_not_retrievable(world: World) -> None:
    client = world.openai_client()
    created = client.responses.create(model="test/gpt", input="hi", store=False)

    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    assert not StoredResponse.objects.exists()


def test_previous_response_id_sends_the_stored_turns_as_context(world: World) -> None:
    client = world.openai_client()
    first = client.responses.create(
        model="test/gpt", input="My name is Ada.", instructions="Be brief."
    )
    second = client.responses.create(
        model="test/gpt", input="What is my name?", previous_response_id=first.id
    )

    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent == [  # the earlier instructions are not carried over, as at OpenAI
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": [{"type": "text", "text": first.output_text}]},
        {"role": "user", "content": "What is my name?"},
    ]
    assert second.previous_response_id == first.id
    assert second.output_text == answer_text("gpt-4o-mini", "What is my name?")
    third = client.responses.create(
        model="test/gpt", input="And again?", previous_response_id=second.id
    )
    assert len(world.last_upstream("/v1/chat/completions")["body"]["messages"]) == 5
    assert third.store is True


def test_a_streamed_response_is_stored_before_its_completed_event(world: World) -> None:
    client = world.openai_client()
    with client.responses.stream(model="test/gpt", input="Stream me") as stream:
        for event in stream:
            if event.type == "response.completed":  # the row exists when this event arrives
                assert StoredResponse.objects.filter(id=event.response.id).exists()
        final = stream.get_final_response()

    assert final.store is True
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_function_calls_and_their_outputs_continue_through_previous_response_id(
    world: World,
) -> None:
    client = world.openai_client()
    first = client.responses.create(
        model="test/gpt", input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    call = first.output[0]
    assert call.type == "function_call"
    client.responses.create(
        model="test/gpt",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )

    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id
    assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_another_organizations_response_is_not_found(world: World) -> None:
    created = world.openai_client().responses.create(model="test/gpt", input="secret")
    other = openai.OpenAI(base_url=f"{world.gateway_url}/v1", max_retries=0,
                          api_key=key_make(organization_make(name="Other")))  # fmt: skip

    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError) as raised:
        other.responses.create(model="test/gpt", input="x", previous_response_id=created.id)
    assert "not found" in raised.value.message
    assert StoredResponse.objects.filter(id=created.id).exists()


def test_expired_responses_are_not_found_and_purged(world: World) -> None:
    client = world.openai_client()
    created = client.responses.create(model="test/gpt", input="old")
    StoredResponse.objects.filter(id=created.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="test/gpt", input="x", previous_response_id=created.id)
    assert responses_purge() == 1 and not StoredResponse.objects.exists()


@override_settings(RESPONSES_STORE_MAX_BYTES=2000)
def test_a_conversation_over_the_size_limit_is_answered_but_not_stored(world: World) -> None:
    client = world.openai_client()
    small = client.responses.create(model="test/gpt", input="short")
    large = client.responses.create(model="test/gpt", input="long " * 500)

    assert small.store is True and large.store is False
    assert list(StoredResponse.objects.values_list("id", flat=True)) == [small.id]


@override_settings(RESPONSES_RETENTION_DAYS=0)
def test_a_retention_of_zero_stores_nothing(world: World) -> None:
    created = world.openai_client().responses.create(model="test/gpt", input="hi")

    assert created.store is False and not StoredResponse.objects.exists()


def test_input_items_list_the_turns_a_response_answered_page_by_page(world: World) -> None:
    client = world.openai_client()
    first = client.responses.create(model="test/gpt", input="What is 6*7?")
    second = client.responses.create(model="test/gpt", previous_response_id=first.id,
                                     input=[{"role": "user", "content": "And 7*8?"}])  # fmt: skip

    newest_first = client.responses.input_items.list(second.id)
    texts = [item.content[0].text for item in newest_first.data]  # type: ignore[union-attr]  # every item here is a message
    assert texts == ["And 7*8?", first.output_text, "What is 6*7?"]
    assert [item.role for item in newest_first.data] == ["user", "assistant", "user"]  # type: ignore[union-attr]  # messages
    assert newest_first.has_more is False and newest_first.first_id == newest_first.data[0].id
    pages = client.responses.input_items.list(second.id, limit=1, order="asc")
    assert [item.id for item in pages.data] == [newest_first.data[-1].id] and pages.has_more
    walked = [item.content[0].text for item in pages]  # type: ignore[union-attr]  # the SDK follows after=last_id
    assert walked == ["What is 6*7?", first.output_text, "And 7*8?"]
    assert len(client.responses.input_items.list(first.id).data) == 1


def test_input_items_refuse_bad_paging_and_other_methods(world: World) -> None:
    created = world.openai_client().responses.create(model="test/gpt", input="hi")
    url = f"{world.gateway_url}/v1/responses/{created.id}/input_items"
    auth = {"Authorization": f"Bearer {world.key}"}

    for query, param in [("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"),
                         ("after=nope", "after"), ("limit=%C2%B2", "limit")]:  # fmt: skip
        response = httpx.get(f"{url}?{query}", headers=auth)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert httpx.delete(url, headers=auth).status_code == 405
    assert httpx.get(url).status_code == 401


def test_item_references_are_replaced_by_the_stored_items(world: World) -> None:
    """``{"type": "item_reference", "id": "msg_…"}``, as the AI SDK's OpenAI provider sends an
    earlier answer back; a function call of the same response by its ``fc_`` id too."""
    client = world.openai_client()
    said = client.responses.create(model="test/gpt", input="My name is Ada.")
    called = client.responses.create(
        model="test/gpt", input="Weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required"
    )
    message, call = said.output[0], called.output[0]
    assert (message.type, call.type) == ("message", "function_call")

    client.responses.create(
        model="test/gpt",
        input=[{"role": "user", "content": "My name is Ada."},
               {"type": "item_reference", "id": message.id},
               {"role": "user", "content": "What is my name?"}],
    )  # fmt: skip

    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"type": "text", "text": said.output_text}]}
    client.responses.create(  # an fc_ id alone (no msg_ of its response) is found too
        model="test/gpt",
        tools=[WEATHER_TOOL],
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "item_reference", "id": call.id},
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )  # fmt: skip
    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.call_id


def _long_stored_message(world: World, text: str) -> str:
    """The id of a stored answer's message, its text replaced by ``text``."""
    created = world.openai_client().responses.create(model="test/gpt", input="hi")
    row = StoredResponse.objects.get(id=created.id)
    row.response["output"][0]["content"][0]["text"] = text
    row.save()
    return created.output[0].id


@override_settings(GATEWAY_MAX_BODY_BYTES=8000)  # one referenced item below fits, two do not
def test_item_references_are_refused_twice_or_beyond_the_size_limit(world: World) -> None:
    """A small body of references cannot expand into a huge prompt: the same item twice is a
    400 (OpenAI's "Duplicate item found"), and the referenced items together are bounded by
    GATEWAY_MAX_BODY_BYTES (413), before anything is sent upstream."""
    client = world.openai_client()
    first = _long_stored_message(world, "x" * 5000)
    second = _long_stored_message(world, "y" * 5000)
    world.fake.requests.clear()
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="test/gpt", input=[{"type": "item_reference", "id": first},
                                                         {"type": "item_reference", "id": first}])  # fmt: skip
    assert raised.value.message.endswith(f"Duplicate item found with id {first}.")
    assert raised.value.body["param"] == "input"  # type: ignore[index]

    client.responses.create(model="test/gpt", input=[{"type": "item_reference", "id": first}])
    assert len(world.upstream_requests()) == 1
    with pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(model="test/gpt", input=[{"type": "item_reference", "id": first},
                                                         {"type": "item_reference", "id": second}])  # fmt: skip
    assert raised.value.status_code == 413
    assert raised.value.body["param"] == "input"  # type: ignore[index]
    assert len(world.upstream_requests()) == 1


@pytest.mark.parametrize("case", ["unknown", "not stored", "other organization", "not a string"])
def test_an_item_reference_to_nothing_stored_is_refused(world: World, case: str) -> None:
    client = world.openai_client()
    reference: object = "msg_gen-0-nothing"
    if case == "not stored":
        reference = client.responses.create(model="test/gpt", input="hi", store=False).output[0].id
    elif case == "other organization":
        other = world_make(world.gateway_url, world.fake_url, world.fake)
        reference = (
            openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=other.key, max_retries=0)
            .responses.create(model="test/gpt", input="secret")
            .output[0]
            .id
        )
    elif case == "not a string":
        reference = 7
    world.fake.requests.clear()

    with pytest.raises(openai.APIStatusError) as raised:
        client.responses.create(
            model="test/gpt", input=[{"type": "item_reference", "id": reference}]
        )

    assert raised.value.status_code == (400 if case == "not a string" else 404)
    assert raised.value.body["param"] == "input"  # type: ignore[index]
    assert world.upstream_requests() == []


def _stored_call(world: World, name: str, item_id: str, call_id: str, text: str = "") -> str:
    """A stored response (``resp_<name>``) with a function call ``item_id`` (and a message
    ``msg_<name>`` when ``text``), as an answer with a made-up call id was stored; its id."""
    output: list[dict[str, object]] = []
    if text:
        output.append({"type": "message", "id": f"msg_{name}", "role": "assistant",
                       "status": "completed", "content": [{"type": "output_text", "text": text}]})  # fmt: skip
    output.append({"type": "function_call", "id": item_id, "call_id": call_id,
                   "name": "get_weather", "arguments": "{}", "status": "completed"})  # fmt: skip
    StoredResponse.objects.create(
        organization=world.organization,
        id=f"resp_{name}",
        expires_at=timezone.now() + timedelta(days=1),
        response={"id": f"resp_{name}", "object": "response", "output": output},
        items=[],
    )
    return f"msg_{name}"


def test_an_fc_reference_several_stored_responses_hold_is_refused_unless_its_message_is_named(
    world: World,
) -> None:
    """``fc_call_0`` was in every answer whose Gemini call had no id: another conversation's
    function call must never be sent. An ``fc_`` id several live responses hold is a 400 naming
    ``input``, unless the input names one of them by its message (``msg_``), wherever it is."""
    client = world.openai_client()
    mine = _stored_call(world, "gen-mine", "fc_call_0", "call_mine", text="Let me look.")
    _stored_call(world, "gen-theirs", "fc_call_0", "call_theirs")
    world.fake.requests.clear()
    output = {"type": "function_call_output", "call_id": "call_mine", "output": "sunny"}
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="test/gpt", tools=[WEATHER_TOOL],
                                input=[{"type": "item_reference", "id": "fc_call_0"}, output])  # fmt: skip
    assert raised.value.body["param"] == "input"  # type: ignore[index]
    assert "more than one stored response" in raised.value.message
    assert world.upstream_requests() == []

    client.responses.create(
        model="test/gpt",
        tools=[WEATHER_TOOL],
        input=[{"role": "user", "content": "Weather?"},
               {"type": "item_reference", "id": "fc_call_0"},
               {"type": "item_reference", "id": mine}, output],
    )  # fmt: skip
    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"]
    assert [call["id"] for call in sent[1]["tool_calls"]] == ["call_mine"]


def test_fc_references_beyond_eight_in_one_request_are_refused(world: World) -> None:
    """Each ``fc_`` reference searches the organization's newest stored responses: at most 8 a
    request (a 400 naming ``input``), before anything is sent upstream."""
    client = world.openai_client()
    for n in range(9):
        _stored_call(world, f"gen-{n}", f"fc_{n}", f"call_{n}")
    references = [{"type": "item_reference", "id": f"fc_{n}"} for n in range(9)]
    world.fake.requests.clear()
    client.responses.create(model="test/gpt", tools=[WEATHER_TOOL], input=references[:8])

    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="test/gpt", tools=[WEATHER_TOOL], input=references)
    assert raised.value.body["param"] == "input"  # type: ignore[index]
    assert "more than 8 item_reference items" in raised.value.message
    assert len(world.upstream_requests()) == 1
