"""Content parts a request may hold (``MAX_MESSAGE_PARTS``, ``MAX_REQUEST_PARTS``), checked on
every ingress before a part is read; telling a tool's media from a turn's own is one set lookup a
part (it was a scan of every tool media object: O(N²), 191 s for 40k blocks on the event loop);
a tool_result without a ``tool_use_id`` is a 400 (its failure is marked per id); the OpenAI
adapter copies only the messages it changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from routing.gateway import request_shape
from routing.gateway.needs import request_needs
from routing.ingress import anthropic_checks
from routing.ingress.anthropic import messages_request_parsed
from routing.providers.base import (
    MAX_MESSAGE_PARTS,
    MAX_REQUEST_PARTS,
    IngressMarks,
    Target,
    parts_cap_problem,
)
from routing.providers.openai_compat import OpenAICompatAdapter
from tests.routing.world import World

IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
PNG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


def _tool_turns(nested: list[Any], **result: Any) -> list[dict[str, Any]]:
    """A question, a tool call, and its result holding ``nested`` blocks plus the turn's own image."""
    tool_result = {"type": "tool_result", "tool_use_id": "t", "content": nested} | result
    return [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t", "name": "s", "input": {}}],
        },
        {"role": "user", "content": [tool_result, IMAGE]},
    ]


class _Walked(tuple):  # type: ignore[type-arg]
    """A tuple that counts the items read from it."""

    walked = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            _Walked.walked += 1
            yield item


def test_telling_tool_media_from_the_turns_own_reads_no_tool_media_per_part() -> None:
    """Old code scanned every tool media object for each part: ~N²/2 items read here."""
    count = MAX_MESSAGE_PARTS - 2
    canonical, marks = messages_request_parsed(
        {"model": "x", "max_tokens": 10, "messages": _tool_turns([IMAGE] * count)}
    )
    counted = IngressMarks(marks.failed_tools, _Walked(marks.tool_media))
    _Walked.walked = 0

    needs = request_needs(canonical, counted)

    assert len(counted.tool_media) == count and _Walked.walked == 0
    assert needs.vision  # the turn's own image still counts


def _post(world: World, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=30,
                      headers={"authorization": f"Bearer {world.key}"})  # fmt: skip


def test_twenty_thousand_tool_result_blocks_are_refused_before_any_work(world: World) -> None:
    body = {"model": "test/claude", "max_tokens": 10, "messages": _tool_turns([IMAGE] * 20_000)}
    answer = _post(world, "/v1/messages", body)

    assert answer.status_code == 400, answer.text
    assert "20002 content parts" in answer.text and "MAX_MESSAGE_PARTS" in answer.text
    assert world.upstream_requests() == []


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_content_parts_are_capped_a_message_and_a_request(world: World, path: str) -> None:
    text = {"type": "text", "text": "a"}
    one = [{"role": "user", "content": [text] * (MAX_MESSAGE_PARTS + 1)}]
    turns = [{"role": "user", "content": [text] * MAX_MESSAGE_PARTS},
             {"role": "assistant", "content": "ok"}] * (MAX_REQUEST_PARTS // MAX_MESSAGE_PARTS)  # fmt: skip
    many = [*turns, {"role": "user", "content": [text]}]
    base = {"model": "test/gpt", "max_tokens": 10}

    over_one = _post(world, path, base | {"messages": one})
    over_all = _post(world, path, base | {"messages": many})
    at_cap = _post(world, path, base | {"messages": many[:-2]})

    assert over_one.status_code == 400 and "MAX_MESSAGE_PARTS" in over_one.text
    assert over_all.status_code == 400 and "MAX_REQUEST_PARTS" in over_all.text
    assert f"{MAX_REQUEST_PARTS + 1} content parts in all" in over_all.text
    assert at_cap.status_code == 200, at_cap.text
    assert len(world.upstream_requests()) == 1


@pytest.mark.parametrize("marked", [False, True])
def test_the_system_prompts_blocks_count_toward_the_caps_on_messages(
    world: World, marked: bool
) -> None:
    """Its blocks are checked one by one like a turn's. Old code counted them only when one was
    marked (the canonical system message then holds parts), naming ``messages[0].content``."""
    text = {"type": "text", "text": "a"}
    system = [text] * MAX_MESSAGE_PARTS + [
        text | ({"cache_control": {"type": "ephemeral"}} if marked else {})
    ]
    turns = [{"role": "user", "content": [text] * MAX_MESSAGE_PARTS},
             {"role": "assistant", "content": "ok"}] * (MAX_REQUEST_PARTS // MAX_MESSAGE_PARTS)  # fmt: skip
    base = {"model": "test/gpt", "max_tokens": 10}

    over_one = _post(world, "/v1/messages", base | {"system": system, "messages": turns[:1]})
    over_all = _post(world, "/v1/messages", base | {"system": [text], "messages": turns[:-1]})

    assert over_one.status_code == 400 and "MAX_MESSAGE_PARTS" in over_one.text
    assert f"system holds {MAX_MESSAGE_PARTS + 1} content parts" in over_one.text
    assert over_all.status_code == 400 and "MAX_REQUEST_PARTS" in over_all.text
    assert f"{MAX_REQUEST_PARTS + 1} content parts in all" in over_all.text
    assert world.upstream_requests() == []


def test_messages_counts_its_parts_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``/v1/messages`` counts on the client's blocks, before translation, and the shared check
    does not count the canonical messages again (old code counted both)."""
    counted: list[str] = []

    def counting(where: str) -> Any:
        def count(counts: list[tuple[str, int]]) -> str | None:
            counted.append(where)
            return parts_cap_problem(counts)

        return count

    monkeypatch.setattr(anthropic_checks, "parts_cap_problem", counting("ingress"))
    monkeypatch.setattr(request_shape, "parts_cap_problem", counting("shared"))
    turn = {"role": "user", "content": [{"type": "text", "text": "a"}] * MAX_MESSAGE_PARTS}
    body = {"model": "test/gpt", "max_tokens": 10, "messages": [turn]}

    answer = _post(world, "/v1/messages", body)
    assert answer.status_code == 200, answer.text
    assert counted == ["ingress"]
    assert _post(world, "/v1/chat/completions", body).status_code == 200
    assert counted == ["ingress", "shared"]


@pytest.mark.parametrize("tool_use_id", [None, ""])
def test_a_tool_result_without_a_tool_use_id_is_a_400(world: World, tool_use_id: Any) -> None:
    """Old code read a missing id as "": is_error on one id-less result marked them all failed."""
    result = {"type": "tool_result", "content": "down", "is_error": True}
    result |= {} if tool_use_id is None else {"tool_use_id": tool_use_id}
    turns = _tool_turns([])
    turns[-1]["content"] = [result, {"type": "tool_result", "content": "fine"}]
    answer = _post(
        world, "/v1/messages", {"model": "test/gpt", "max_tokens": 10, "messages": turns}
    )

    assert answer.status_code == 400, answer.text
    assert "messages[2].content[0] is a tool_result block: give tool_use_id" in answer.text
    assert world.upstream_requests() == []


def test_the_openai_adapter_copies_only_the_messages_it_changes() -> None:
    ok = {"role": "tool", "tool_call_id": "a", "content": "fine"}
    failed = {"role": "tool", "tool_call_id": "b", "content": "down"}
    thought = {"role": "assistant", "content": "x", "reasoning_details": [{"type": "x"}]}
    request = {"model": "m", "messages": [{"role": "user", "content": "q"}, thought, ok, failed]}
    target = Target("http://h", "m", None, 10, failed_tools=frozenset({"b"}))

    sent = OpenAICompatAdapter().build_request(request, target, stream=False).body["messages"]

    assert sent[0] is request["messages"][0] and sent[2] is ok
    assert sent[1] == {"role": "assistant", "content": "x"}
    assert sent[3] == failed | {"content": "Error: down"} and failed["content"] == "down"
