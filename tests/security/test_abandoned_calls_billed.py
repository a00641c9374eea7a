"""A call the provider received is billed its prompt when the caller walks away from it.

A provider bills the prompt of every request it received, answered or not. A client that sent a
long prompt and disconnected before the answer (a whole answer, or a stream's first content), and
a parallel pipeline whose own ``branch_timeout_s`` or ``fastest`` aggregate stopped its dear
branches, were billed 0: the platform paid the provider for prompts nobody was charged for, as
often as the client liked, on any balance that covers one hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import KeyScope
from billing.models import LedgerEntry, Reservation, UsageRecord, UsageStep
from tests.factories import key_client
from tests.routing.servers import poll
from tests.routing.world import World, base_catalog, endpoint, model

PROMPT = "Summarise the history of tea in every region where it is grown. " * 400


def _slow_catalog(world: World, delay_ms: int) -> None:
    """``test/slow``: a dear model whose provider takes ``delay_ms`` before it answers."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/slow"))
    data["endpoints"].append(
        endpoint("test/slow", "fake-openai-b", f"gpt-4o@delay={delay_ms}", "15", "75")
    )
    world.catalog(data)


def _record(world: World) -> UsageRecord:
    return poll(lambda: UsageRecord.objects.filter(organization=world.organization).first())


def _assert_prompt_billed(world: World, record: UsageRecord) -> None:
    assert record.prompt_tokens > 0 and record.cost > 0, (record.status, record.cost)
    assert "usage_estimated" in record.flag_list
    entry = LedgerEntry.objects.get(idempotency_key=f"usage:{record.generation_id}")
    assert entry.amount == -record.cost
    assert Reservation.objects.get(generation_id=record.generation_id).amount >= record.cost


_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": PROMPT}]}),
    "stream": (
        "/v1/chat/completions",
        {"stream": True, "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "prompts": ("/v1/completions", {"prompt": [PROMPT, PROMPT[:200]]}),
    "embeddings": ("/v1/embeddings", {"input": [PROMPT, PROMPT[:200]]}),
}


@pytest.mark.parametrize("kind", list(_REQUESTS))
def test_a_client_that_leaves_before_the_answer_is_billed_the_prompt_it_sent(
    world: World, kind: str
) -> None:
    data = base_catalog(world.fake_url)
    capabilities = ["embeddings"] if kind == "embeddings" else None
    data["models"].append(model("test/slow", capabilities))
    upstream = "text-embedding-3-small" if kind == "embeddings" else "gpt-4o"
    data["endpoints"].append(
        endpoint("test/slow", "fake-openai-b", f"{upstream}@delay=4000", "15", "75")
    )
    world.catalog(data)
    path, body = _REQUESTS[kind]

    world.client_leaves(path, {"model": "test/slow", **body}, after=1.0)

    assert poll(lambda: world.upstream_requests("/v1/"))  # the provider has it
    record = _record(world)
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    assert record.model == "test/slow"
    _assert_prompt_billed(world, record)


def test_parallel_branches_stopped_by_the_pipeline_are_billed_their_prompts(
    world: World,
) -> None:
    _slow_catalog(world, delay_ms=3000)
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    spec = {
        "slug": "race",
        "kind": "parallel",
        "steps": [{"model": "test/gpt"}, {"model": "test/slow"}, {"model": "test/slow"}],
        "aggregate": {"type": "fastest"},
        "branch_timeout_s": 1,
    }
    assert admin.post("/api/v1/pipelines", spec, format="json").status_code == 201
    client = world.openai_client()

    completion = client.chat.completions.create(
        model="pipeline/race", messages=[{"role": "user", "content": PROMPT}]
    )

    record = world.usage_record(completion.id)
    steps = {s.step: s for s in UsageStep.objects.filter(generation_id=completion.id)}
    assert steps[0].gate == "chosen"
    for index in (1, 2):
        assert steps[index].status in ("cancelled", "timed_out")
        assert steps[index].prompt_tokens > 0 and steps[index].cost > 0
    assert record.cost == sum(s.cost for s in steps.values())
    _assert_prompt_billed(world, record)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "series", "steps": [{"model": "test/gpt"}, {"model": "test/slow"}]},
        {
            "kind": "parallel",
            "steps": [{"model": "test/gpt"}, {"model": "test/gpt"}, {"model": "test/slow"}],
            "aggregate": {"type": "majority"},
        },
    ],
    ids=["series", "parallel"],
)
def test_a_client_that_leaves_a_pipeline_is_billed_its_calls(
    world: World, spec: dict[str, Any]
) -> None:
    """The answers that came and the prompt of the call in flight: before, a client leaving a
    pipeline before its last call answered was billed nothing, whatever had been called."""
    _slow_catalog(world, delay_ms=4000)
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    assert (
        admin.post("/api/v1/pipelines", {"slug": "left", **spec}, format="json").status_code == 201
    )

    left = {"model": "pipeline/left", "messages": [{"role": "user", "content": PROMPT}]}
    world.client_leaves("/v1/chat/completions", left, after=1.5)

    record = _record(world)
    assert (record.status, record.error_type) == ("aborted", "client_disconnected")
    steps = list(UsageStep.objects.filter(generation_id=record.generation_id).order_by("step"))
    assert len(steps) == len(spec["steps"]) and all(s.cost > 0 for s in steps)
    assert [s.status for s in steps][-1] == "cancelled" and steps[-1].completion_tokens == 0
    assert record.cost == sum(s.cost for s in steps)
    assert LedgerEntry.objects.get(idempotency_key=f"usage:{record.generation_id}").amount == (
        -record.cost
    )
    assert Reservation.objects.get(generation_id=record.generation_id).amount >= record.cost
