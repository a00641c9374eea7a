"""A pipeline's templates cannot make its calls cost more than the request held.

A series step's template, a judge gate's and a parallel pipeline's judge or synthesiser may name
``{previous}``, ``{answer}``, ``{answers}`` and ``{input}`` more than once: each copy is prompt
text the provider counts. The hold is taken once, before any call; a prompt beyond it is a charge
above the hold, which a small balance cannot cover (the platform pays the provider the rest).
"""

from __future__ import annotations

from typing import Any

from accounts.models import KeyScope
from billing.models import Reservation, UsageStep
from tests.factories import key_client
from tests.routing.world import World, base_catalog, endpoint, model

URL = "/api/v1/pipelines"


def _bytes_catalog(world: World) -> None:
    """``test/bytes``: an OpenAI-style model whose provider counts a token per prompt byte (the
    worst case a byte-level tokenizer reaches, and what the hold's bound assumes)."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/bytes"))
    data["endpoints"].append(
        endpoint("test/bytes", "fake-openai-b", "gpt-4o-mini@tokenizer=bytes", "5", "20")
    )
    world.catalog(data)


def _create(world: World, spec: dict[str, Any]) -> None:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    response = admin.post(URL, spec, format="json")
    assert response.status_code == 201, response.content


def _ask(world: World, slug: str, prompt: str = "Describe green tea for a shop label") -> str:
    client = world.openai_client()
    completion = client.chat.completions.create(
        model=f"pipeline/{slug}",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=60,
    )
    return completion.id


def _assert_within_hold(world: World, generation_id: str) -> None:
    record = world.usage_record(generation_id)
    hold = Reservation.objects.get(generation_id=generation_id)
    steps = list(UsageStep.objects.filter(generation_id=generation_id).order_by("step"))
    assert record.cost > 0 and steps
    assert "over_hold" not in record.flag_list, (record.cost, hold.amount, record.flags)
    assert record.cost <= hold.amount


def test_a_series_template_repeating_previous_is_held_for_every_copy(world: World) -> None:
    _bytes_catalog(world)
    _create(
        world,
        {
            "slug": "echo-many",
            "kind": "series",
            "steps": [
                {"model": "test/gpt"},
                {"model": "test/bytes", "template": "{previous}\n" * 700},
            ],
        },
    )

    generation_id = _ask(world, "echo-many")

    sent = world.upstream_requests("/v1/chat/completions")[-1]["body"]["messages"][-1]["content"]
    assert len(sent) > 50_000  # the previous answer 700 times over
    _assert_within_hold(world, generation_id)


def test_a_judge_template_repeating_answer_is_held_for_every_copy(world: World) -> None:
    _bytes_catalog(world)
    judge = {"type": "judge", "model": "test/bytes", "template": "{input}" + "{answer}\n" * 700}
    _create(
        world,
        {
            "slug": "judge-many",
            "kind": "cascade",
            "steps": [{"model": "test/gpt", "gate": judge}, {"model": "test/gpt"}],
        },
    )

    _assert_within_hold(world, _ask(world, "judge-many"))


def test_a_synthesiser_template_repeating_answers_is_held_for_every_copy(world: World) -> None:
    _bytes_catalog(world)
    aggregate = {"type": "synthesize", "model": "test/bytes", "template": "{input}{answers}" * 400}
    _create(
        world,
        {
            "slug": "synth-many",
            "kind": "parallel",
            "steps": [{"model": "test/gpt"}, {"model": "test/gpt"}],
            "aggregate": aggregate,
        },
    )

    _assert_within_hold(world, _ask(world, "synth-many"))


def test_fields_in_the_callers_message_are_not_filled_in(world: World) -> None:
    """A caller (any key allowed the pipeline) writing ``{previous}`` or ``{answer}`` into its
    message gets those words sent as they are, not the answer once per copy."""
    _bytes_catalog(world)
    judge = {"type": "judge", "model": "test/bytes", "template": "Q: {input}\nA: {answer}"}
    _create(
        world,
        {
            "slug": "draft-then-edit",
            "kind": "series",
            "steps": [
                {"model": "test/gpt"},
                {"model": "test/bytes", "template": "Question: {input}\nDraft: {previous}"},
            ],
        },
    )
    _create(
        world,
        {
            "slug": "judged",
            "kind": "cascade",
            "steps": [{"model": "test/gpt", "gate": judge}, {"model": "test/gpt"}],
        },
    )

    series = _ask(world, "draft-then-edit", "{previous}" * 1500)
    sent = world.last_upstream("/v1/chat/completions")["body"]["messages"][-1]["content"]
    assert sent.count("{previous}") == 1500
    _assert_within_hold(world, series)
    judged = _ask(world, "judged", "{answer}" * 1500)
    judge_calls = [
        r["body"] for r in world.upstream_requests("/v1/chat/completions")
        if "tokenizer=bytes" in r["body"]["model"]
    ]  # fmt: skip
    assert judge_calls[-1]["messages"][-1]["content"].count("{answer}") == 1500
    _assert_within_hold(world, judged)
