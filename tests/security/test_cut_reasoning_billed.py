"""A stream cut while its model reasons is billed the reasoning the provider generated, in every
shape a provider streams it: DeepSeek's ``reasoning_content`` (relayed to the client as it came)
and Anthropic's thinking the request excluded (``reasoning.exclude``: read, never relayed).
Before, neither counted: a client that read DeepSeek's reasoning and left before the usage chunk
got it free, and excluded thinking cut short billed one output token."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from billing.models import Reservation, UsageFlag, UsageRecord
from routing.fake_upstream.answers import split_tokens
from routing.gateway.transport import _Connection
from routing.gateway.usage_estimate import choices_chars
from routing.providers.answer_checks import generated_chars as delta_chars
from tests.routing.servers import LeavesWhen, ServerThread, poll
from tests.routing.world import World, endpoint, model
from training.tokens import tokens_from_chars


def _record(world: World, model_id: str) -> UsageRecord:
    return poll(
        lambda: UsageRecord.objects.filter(organization=world.organization, model=model_id).first()
    )


def _claude(world: World, model_id: str, upstream: str) -> None:
    """``model_id``: the fake's ``upstream`` on the Anthropic wire, at $3/$15 per 1M tokens."""
    world.catalog({
        "models": [model(model_id)],
        "endpoints": [endpoint(model_id, "fake-anthropic", upstream, "3", "15")],
    })  # fmt: skip


class _AllSentIsRead:
    """Holds (on the gateway's loop) once the fake's stream has stalled, having sent all it will
    (its record's ``stalled``), and the gateway has read it all: one upstream connection has
    received every byte sent, and the stream's reader is parked waiting for more on it. ``met``:
    it has held once (if never, the gateway's 2 s upstream timeout ended the stream instead)."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.world, self.met, self.waiter = world, False, "not checked"
        self.received: dict[_Connection, int] = {}  # body bytes, per upstream connection
        on_body = _Connection.on_body

        def counted(connection: _Connection, piece: bytes) -> None:
            self.received[connection] = self.received.get(connection, 0) + len(piece)
            on_body(connection, piece)

        monkeypatch.setattr(_Connection, "on_body", counted)

    def __call__(self) -> bool:
        stalled = [r for r in self.world.fake.requests if r["stalled"]]
        if not stalled or not self.received:
            self.waiter = "no stall yet" if not stalled else "no body received"
            return False
        sent = stalled[0]["bytes_sent"]
        reader = next((c for c, n in self.received.items() if n == sent), None)
        if reader is None:
            self.waiter = f"no connection received all {sent} bytes"
            return False
        waiter = reader._waiter
        self.waiter = "none" if waiter is None else "done" if waiter.done() else "pending"
        self.met = self.met or self.waiter == "pending"
        return self.waiter == "pending"

    def state(self) -> str:
        """What the fake sent, the gateway received and its reader did, at the last check."""
        fake = [(r["stalled"], r["bytes_sent"]) for r in self.world.fake.requests]
        received = list(self.received.values())
        return f"fake (stalled, bytes_sent) {fake}, received {received}, waiter {self.waiter}"


def _leave_once_read(
    world: World,
    leaving: tuple[ServerThread, LeavesWhen],
    monkeypatch: pytest.MonkeyPatch,
    body: Any,
) -> None:
    """POST ``body`` (a stream none of which reaches the client) and leave once the gateway has
    read all the fake sent before its stall (``_AllSentIsRead``)."""
    server, app = leaving
    app.gone = read = _AllSentIsRead(world, monkeypatch)
    app.cancels = False
    url, headers = f"{server.url}/v1/chat/completions", {"Authorization": f"Bearer {world.key}"}
    try:
        with httpx.stream("POST", url, headers=headers, json=body, timeout=30) as answer:
            assert answer.status_code in (200, 499)  # a stream's head went out, or nothing did
            answer.read()
    except httpx.RemoteProtocolError:
        pass  # the stream the gateway started, cut when its client left
    finally:
        app.gone = lambda: False
    assert read.met, f"left on the upstream timeout, not once all was read: {read.state()}"


def test_deepseek_reasoning_read_before_the_client_leaves_is_billed(world: World) -> None:
    """The fake's reasoner streams 20 sentences of ``reasoning_content`` (140 pieces), then
    stalls after 81 events: the client reads the role chunk and 80 pieces of reasoning, then
    leaves. Billed exactly those 80 pieces: more would be reasoning counted twice."""
    world.catalog({
        "models": [model("test/reasoner")],
        "endpoints": [endpoint("test/reasoner", "fake-openai", "deepseek-reasoner@hang_after=81")],
    })  # fmt: skip
    body = {"model": "test/reasoner", "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip

    world.client_reads_then_leaves("/v1/chat/completions", body, events=81)

    record = _record(world, "test/reasoner")
    thought = " ".join(["Step: weigh the question once more."] * 20)
    relayed = "".join(split_tokens(thought)[:80])
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert record.completion_tokens == tokens_from_chars(len(relayed))  # old code: 0
    assert UsageFlag.USAGE_ESTIMATED in record.flag_list
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_excluded_anthropic_thinking_cut_short_is_billed(
    world: World, leaving: tuple[ServerThread, LeavesWhen], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic streams the thinking whatever ``exclude`` says (the gateway drops it); the fake
    stalls after message_start, ping, the block's start and 20 thinking deltas. Nothing of them
    reaches the client, so it leaves once the gateway has read all the fake sent before its
    stall. Billed exactly those 20 deltas: more would be thinking counted twice."""
    _claude(world, "test/claude-think", "claude-sonnet-4-5@hang_after=23")
    prompt = "Explain, with care and at length, why the sky is blue in the daytime and red at dusk."
    body = {"model": "test/claude-think", "stream": True, "max_tokens": 4000,
            "reasoning": {"max_tokens": 2000, "exclude": True},
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip

    _leave_once_read(world, leaving, monkeypatch, body)

    record = _record(world, "test/claude-think")
    thought = f"The user asks: {prompt[:80]}. I will answer plainly."
    streamed = "".join(split_tokens(thought)[:20])
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert record.completion_tokens == tokens_from_chars(len(streamed))  # old code: 1
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_redacted_thinking_cut_short_is_billed_at_least_its_length(
    world: World, leaving: tuple[ServerThread, LeavesWhen], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anthropic bills redacted thinking in full, and sends it encrypted (``data``): no relayed
    text counts it. The fake stalls after message_start, ping and the redacted block's start."""
    _claude(world, "test/claude-redacted", "claude-sonnet-4-5-redacted@hang_after=3")
    prompt = "Why is the sky blue?"
    body = {"model": "test/claude-redacted", "stream": True, "max_tokens": 4000,
            "reasoning": {"max_tokens": 2000}, "messages": [{"role": "user", "content": prompt}]}  # fmt: skip

    _leave_once_read(world, leaving, monkeypatch, body)

    record = _record(world, "test/claude-redacted")
    thought = f"The user asks: {prompt}. I will answer plainly."
    data = base64.b64encode(thought.encode() * 40).decode()
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    # Its ciphertext's bytes (base64's ¾) ÷ 4: the branch's first fix counted base64's length.
    ciphertext = len(data) * 3 // 4
    assert tokens_from_chars(ciphertext) <= record.completion_tokens < tokens_from_chars(len(data))
    assert record.completion_tokens > 500  # old code: 1
    assert record.cost <= Reservation.objects.get(generation_id=record.generation_id).amount


def test_reasoning_sent_under_both_names_is_counted_once() -> None:
    """vLLM (between two releases) sends the same reasoning as ``reasoning`` and as
    ``reasoning_content``: an estimate counts it once, in a stream delta and in a whole answer
    (both were added before: twice the reasoning billed)."""
    thought = "x" * 100
    both = {"reasoning": thought, "reasoning_content": thought}

    assert delta_chars(both) == 100
    assert delta_chars(both | {"content": "abc"}) == 103
    assert choices_chars([{"message": both | {"content": "abc"}}]) == 103
    assert delta_chars({"reasoning_content": thought}) == 100  # either name alone still counts


@pytest.mark.parametrize("upstream", ["claude-sonnet-4-5-redacted", "claude-sonnet-4-5"])
def test_a_whole_and_a_streamed_answer_count_unrelayed_thinking_alike(
    world: World, upstream: str
) -> None:
    """An answer whose count is impossible (so billed on characters ÷ 4): its redacted thinking
    (¾ of the data's length) and its excluded thinking count whole as streamed. Before, a whole
    answer counted neither (redacted: 120 output tokens billed whole, 710 streamed; excluded: 120
    and 134)."""
    world.catalog({
        "models": [model("test/claude-estimated")],
        "endpoints": [endpoint("test/claude-estimated", "fake-anthropic",
                               f"{upstream}@report_completion=-3", "3", "15")],
    })  # fmt: skip
    reasoning = {"max_tokens": 2000, "exclude": upstream == "claude-sonnet-4-5"}
    body = {"model": "test/claude-estimated", "max_tokens": 4000, "extra_body": {"reasoning": reasoning},
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}  # fmt: skip
    client = world.openai_client()

    whole = client.chat.completions.create(**body)
    with client.chat.completions.create(**body, stream=True) as stream:
        streamed = [chunk.id for chunk in stream][-1]

    billed = [world.usage_record(answer).completion_tokens for answer in (whole.id, streamed)]
    answer = tokens_from_chars(len(whole.choices[0].message.content or ""))
    assert billed[0] == billed[1] > answer + (500 if "redacted" in upstream else 5)
