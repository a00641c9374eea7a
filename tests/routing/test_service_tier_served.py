"""``service_tier`` on every path that takes it, by chat's rules (``request_shape.tier_refusal``):
on RouterHub's provider keys ``/v1/responses`` and ``/v1/embeddings`` accept ``auto``,
``default`` and ``on_demand`` to OpenAI-style hosts and refuse any other tier with a 400 naming
it; what is not sent is named in ``x-routerhub-dropped``. And the tier the provider says it
served comes back to the client as OpenAI gives it: in a chat completion, every stream chunk
from the one that said it, and a response. The fake upstream answers the tier asked for
("auto" served as "default"), as OpenAI does. Before, ``/v1/responses`` and ``/v1/embeddings``
dropped any tier in silence, and no answer said the tier served."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.routing.world import World, base_catalog, embedding_models

HI = [{"role": "user", "content": "Hi"}]


def _post(world: World, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {world.key}"})  # fmt: skip


def _events(answer: httpx.Response) -> list[dict[str, Any]]:
    lines = [line.removeprefix("data: ") for line in answer.text.splitlines()]
    return [orjson.loads(line) for line in lines if line.startswith("{")]


@pytest.mark.parametrize("tier", ["priority", "flex"])
def test_responses_refuse_a_tier_the_catalog_does_not_price(world: World, tier: str) -> None:
    answer = _post(
        world, "/v1/responses", {"model": "test/gpt", "input": "Hi", "service_tier": tier}
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "service_tier"
    assert not world.upstream_requests()


def test_responses_send_a_standard_tier_and_say_the_tier_served(world: World) -> None:
    client = world.openai_client()

    response = client.responses.create(model="test/gpt", input="Hi", service_tier="auto")

    assert world.last_upstream("/chat/completions")["body"]["service_tier"] == "auto"
    assert response.service_tier == "default"
    events = _events(_post(world, "/v1/responses", {"model": "test/gpt", "input": "Hi",
                                                    "service_tier": "default", "stream": True}))  # fmt: skip
    done = next(e for e in events if e.get("type") == "response.completed")
    assert done["response"]["service_tier"] == "default"


@pytest.mark.parametrize("path", ["/v1/responses", "/v1/chat/completions"])
def test_a_tier_to_anthropic_is_said_dropped_on_responses_as_on_chat(
    world: World, path: str
) -> None:
    body = {"model": "test/claude", "service_tier": "priority"}
    body |= {"input": "Hi"} if path == "/v1/responses" else {"messages": HI}

    answer = _post(world, path, body)

    assert answer.status_code == 200, answer.text
    assert "service_tier" not in str(world.upstream_requests()[-1]["body"])
    assert answer.headers["x-routerhub-dropped"] == "service_tier"


def _embedding_catalog(world: World) -> None:
    world.catalog(embedding_models(base_catalog(world.fake_url)))


@pytest.mark.parametrize(
    ("tier", "message"),
    [("priority", "service_tier 'priority' is not offered"), (7, "service_tier must be a string")],
)
def test_embeddings_refuse_a_tier_as_chat_does(world: World, tier: object, message: str) -> None:
    _embedding_catalog(world)

    answer = _post(world, "/v1/embeddings", {"model": "test/embed", "input": "hello",
                                             "service_tier": tier})  # fmt: skip

    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "service_tier" and message in error["message"]
    assert not world.upstream_requests("/embeddings")


@pytest.mark.parametrize(
    ("model_id", "tier"), [("test/embed", "auto"), ("test/embed-g", "priority")]
)
def test_embeddings_name_the_tier_they_do_not_send(world: World, model_id: str, tier: str) -> None:
    """No embeddings API takes a tier: a standard one (or any, to Gemini) is served at the
    catalog's price, not sent, and named in ``x-routerhub-dropped`` (before: said nowhere)."""
    _embedding_catalog(world)

    answer = _post(world, "/v1/embeddings", {"model": model_id, "input": "hello",
                                             "service_tier": tier})  # fmt: skip

    assert answer.status_code == 200, answer.text
    assert "service_tier" not in str(world.upstream_requests()[-1]["body"])
    assert answer.headers["x-routerhub-dropped"] == "service_tier"


def test_chat_says_the_tier_served_whole_and_streamed(world: World) -> None:
    client = world.openai_client()

    completion = client.chat.completions.create(model="test/gpt", messages=HI, service_tier="auto")
    chunks = list(
        client.chat.completions.create(
            model="test/gpt", messages=HI, service_tier="default", stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip

    assert completion.service_tier == "default"
    assert chunks and all(chunk.service_tier == "default" for chunk in chunks)
    assert chunks[-1].usage is not None  # the usage chunk says it too
    plain = _post(world, "/v1/chat/completions", {"model": "test/gpt", "messages": HI})
    assert "service_tier" not in plain.json()  # unsaid upstream, unsaid here


@pytest.mark.parametrize(("said_in", "from_chunk"), [("first", 0), ("usage", -1)])
def test_a_tier_said_once_is_said_from_that_chunk_on(
    world: World, said_in: str, from_chunk: int
) -> None:
    """A provider saying the tier in one chunk only: every later chunk says it too, the usage
    chunk included, and none before it does. The stream's head keeps it (``streaming._emit``
    sets it on the one head every later chunk and the usage chunk copy): this fails when each
    chunk gets a fresh head, not when the decoder forgets the tier (the next test's case)."""
    data = base_catalog(world.fake_url)
    data["models"].append(data["models"][0] | {"id": "test/once", "name": "test/once"})
    data["endpoints"].append(
        data["endpoints"][0]
        | {"model": "test/once", "upstream_model": f"gpt-4o-mini@tier_in={said_in}"}
    )
    world.catalog(data)

    answer = _post(world, "/v1/chat/completions", {
        "model": "test/once", "messages": HI, "service_tier": "default", "stream": True,
        "stream_options": {"include_usage": True}})  # fmt: skip

    assert answer.status_code == 200, answer.text
    chunks = _events(answer)
    first = range(len(chunks))[from_chunk]
    assert len(chunks) > 2 and chunks[-1].get("usage")
    assert all(chunk.get("service_tier") == "default" for chunk in chunks[first:])
    assert not any("service_tier" in chunk for chunk in chunks[:first])


def test_an_unpriced_tier_said_in_the_first_chunk_only_is_flagged(world: World) -> None:
    """The decoder remembers a tier said once (``openai_compat``) for the usage the provider
    reports later without it, so billing reads the tier served: a stream served at ``priority``
    that says so in its first chunk only is flagged ``unpriced_tier`` (fails when the decoder
    forgets it: the usage then says no tier, read as the standard one, and nothing is flagged)."""
    catalog = base_catalog(world.fake_url)
    catalog["endpoints"][0]["upstream_model"] = "gpt-4o-mini@tier=priority,tier_in=first"
    world.catalog(catalog)

    answer = _post(world, "/v1/chat/completions", {"model": "test/gpt", "messages": HI,
                                                   "stream": True})  # fmt: skip

    assert answer.status_code == 200, answer.text
    assert _events(answer)[0]["service_tier"] == "priority"
    assert world.usage_record(answer.headers["x-generation-id"]).flag_list == ["unpriced_tier"]
