"""Pipelines (issue 17): created through ``/api/v1/pipelines``, served as ``pipeline/<slug>``
through the official ``openai`` SDK against the fake upstream, billed with one hold and one
charge whose child records (``UsageStep``) sum to it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import orjson
import pytest

from accounts.models import KeyScope, Role
from billing.models import CreditAccount, LedgerEntry, Reservation, UsageStep
from routing.fake_upstream.answers import answer_text
from tests.factories import key_client, key_make, member_add
from tests.routing.test_gateway_media_input import TOOL as SCREENSHOT_TOOL
from tests.routing.test_gateway_media_input import _agent_turns, _text_only
from tests.routing.world import World, base_catalog, endpoint, model

URL = "/api/v1/pipelines"
DESCRIBE = "Describe green tea for a shop label"


def strong_catalog(world: World) -> None:
    """The base catalog plus a dear model on an OpenAI-style endpoint (the fake's 'large')."""
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/gpt-strong"))
    data["endpoints"].append(endpoint("test/gpt-strong", "fake-openai-b", "gpt-5", "5", "20"))
    world.catalog(data)


def assert_children_sum_to_the_charge(world: World, generation_id: str, steps: int) -> None:
    record = world.usage_record(generation_id)
    children = list(UsageStep.objects.filter(generation_id=generation_id))
    assert len(children) == steps
    assert sum((c.cost for c in children), Decimal(0)) == record.cost > 0
    entry = LedgerEntry.objects.get(idempotency_key=f"usage:{generation_id}")
    assert entry.amount == -record.cost
    hold = Reservation.objects.get(generation_id=generation_id)
    assert hold.amount >= record.cost and hold.state == "settled"
    balance = CreditAccount.objects.get(organization=world.organization).balance
    assert balance == Decimal("10") - record.cost


def test_cascade_escalates_when_the_cheap_answer_fails_its_json_gate(world: World) -> None:
    strong_catalog(world)
    steps = [
        {"model": "test/gpt", "gate": {"type": "json"}},
        {"model": "test/gpt-strong", "gate": {"type": "json_schema", "schema": {
            "type": "object", "required": ["answer"]}},
         "response_format": {"type": "json_object"}},
    ]  # fmt: skip
    assert world.pipeline_create("json-cascade", "cascade", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/json-cascade", messages=[{"role": "user", "content": DESCRIBE}]
    )

    assert completion.model == "test/gpt-strong"
    answer = orjson.loads(completion.choices[0].message.content or "")
    assert answer["answer"] == answer_text("gpt-5", DESCRIBE)
    pipeline = completion.model_extra["pipeline"]
    assert pipeline["kind"] == "cascade" and pipeline["passed"] is True
    assert [(s["model"], s["gate"]) for s in pipeline["steps"]] == [
        ("test/gpt", "failed"),
        ("test/gpt-strong", "passed"),
    ]
    sent = world.upstream_requests("/v1/chat/completions")
    assert [r["body"]["model"] for r in sent] == ["gpt-4o-mini", "gpt-5"]
    assert "response_format" not in sent[0]["body"]
    assert sent[1]["body"]["response_format"] == {"type": "json_object"}
    assert completion.usage is not None
    assert completion.usage.model_extra["cost"] == pytest.approx(
        sum(s["cost"] for s in pipeline["steps"])
    )
    assert_children_sum_to_the_charge(world, completion.id, steps=2)


def test_cascade_stops_at_the_first_answer_that_passes(world: World) -> None:
    strong_catalog(world)
    steps = [{"model": "test/gpt", "gate": {"type": "non_empty"}}, {"model": "test/gpt-strong"}]
    assert world.pipeline_create("cheap-first", "cascade", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/cheap-first", messages=[{"role": "user", "content": DESCRIBE}]
    )

    assert completion.choices[0].message.content == answer_text("gpt-4o-mini", DESCRIBE)
    assert [s["gate"] for s in completion.model_extra["pipeline"]["steps"]] == ["passed"]
    assert len(world.upstream_requests("/v1/chat/completions")) == 1
    assert_children_sum_to_the_charge(world, completion.id, steps=1)


def test_a_step_whose_provider_fails_escalates_and_costs_nothing(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/broken"), model("test/gpt-strong")]
    data["endpoints"] += [
        endpoint("test/broken", "fake-openai", "gpt-4o-mini@status=500"),
        endpoint("test/gpt-strong", "fake-openai-b", "gpt-5", "5", "20"),
    ]
    world.catalog(data)
    steps = [{"model": "test/broken", "gate": {"type": "non_empty"}}, {"model": "test/gpt-strong"}]
    assert world.pipeline_create("fallback", "cascade", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/fallback", messages=[{"role": "user", "content": DESCRIBE}]
    )

    first, second = completion.model_extra["pipeline"]["steps"]
    assert (first["status"], first["gate"], first["cost"]) == ("failed", "no_answer", 0)
    assert (second["model"], second["gate"]) == ("test/gpt-strong", "none")
    assert completion.model_extra["pipeline"]["passed"] is True
    assert_children_sum_to_the_charge(world, completion.id, steps=2)


def test_series_feeds_each_answer_to_the_next_step_and_returns_the_outputs(
    world: World,
) -> None:
    strong_catalog(world)
    template = "Refine this draft answer to '{input}': {previous}"
    steps = [{"model": "test/gpt"}, {"model": "test/gpt-strong", "template": template}]
    assert world.pipeline_create("draft-refine", "series", steps).status_code == 201

    completion = world.openai_client().chat.completions.create(
        model="pipeline/draft-refine",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": DESCRIBE},
        ],
    )

    draft = answer_text("gpt-4o-mini", DESCRIBE)
    refine_prompt = template.replace("{input}", DESCRIBE).replace("{previous}", draft)
    sent = world.upstream_requests("/v1/chat/completions")
    assert sent[1]["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": refine_prompt},
    ]
    assert completion.choices[0].message.content == answer_text("gpt-5", refine_prompt)
    pipeline = completion.model_extra["pipeline"]
    assert [s["output"] for s in pipeline["steps"]] == [
        draft,
        completion.choices[0].message.content,
    ]
    assert_children_sum_to_the_charge(world, completion.id, steps=2)
    shown = key_client(world.key).get(f"/api/v1/generation?id={completion.id}").json()
    assert [s["model"] for s in shown["steps"]] == ["test/gpt", "test/gpt-strong"]
    assert sum(Decimal(s["cost"]) for s in shown["steps"]) == Decimal(shown["cost"])


def test_the_responses_api_serves_a_pipeline_with_its_pipeline_object(world: World) -> None:
    strong_catalog(world)
    steps = [{"model": "test/gpt", "gate": {"type": "json"}}, {"model": "test/gpt-strong"}]
    assert world.pipeline_create("via-responses", "cascade", steps).status_code == 201

    response = world.openai_client().responses.create(
        model="pipeline/via-responses", input=DESCRIBE
    )

    assert response.output_text == answer_text("gpt-5", DESCRIBE)
    assert [s["gate"] for s in response.model_extra["pipeline"]["steps"]] == ["failed", "none"]
    assert_children_sum_to_the_charge(world, response.id.removeprefix("resp_"), steps=2)


def test_the_anthropic_sdk_is_served_a_pipeline_as_a_message(world: World) -> None:
    strong_catalog(world)
    steps = [{"model": "test/gpt", "gate": {"type": "json"}}, {"model": "test/gpt-strong"}]
    assert world.pipeline_create("via-messages", "cascade", steps).status_code == 201
    client = world.anthropic_client()

    message = client.messages.create(
        model="pipeline/via-messages",
        max_tokens=200,
        messages=[{"role": "user", "content": DESCRIBE}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == answer_text("gpt-5", DESCRIBE)
    assert message.model == "test/gpt-strong"
    assert [s["gate"] for s in message.model_extra["pipeline"]["steps"]] == ["failed", "none"]
    assert_children_sum_to_the_charge(world, message.id, steps=2)


def test_a_pipeline_request_that_cannot_be_served_is_refused_before_any_hold(
    world: World,
) -> None:
    assert world.pipeline_create("one", "cascade", [{"model": "test/gpt"}]).status_code == 201
    client = world.openai_client()

    with pytest.raises(openai.BadRequestError, match="router does not apply to a pipeline"):
        client.chat.completions.create(
            model="pipeline/one",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"router": "x"},
        )
    with pytest.raises(openai.NotFoundError, match="No pipeline 'pipeline/nope'"):
        client.chat.completions.create(
            model="pipeline/nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert not Reservation.objects.exists()
    assert world.upstream_requests() == []


@pytest.mark.parametrize(
    ("kind", "steps", "message"),
    [
        ("cascade", [{"model": "test/unknown"}], "unknown model 'test/unknown'. Known models: "
         "test/claude, test/gemini, test/gemini-pro, test/gpt"),
        ("cascade", [{"model": "pipeline/other"}], "a pipeline cannot call a pipeline"),
        ("cascade", [{"model": "router/missing"}], "no router 'router/missing'"),
        ("cascade", [{"model": "test/gpt"}] * 3, "at most 2 steps"),
        ("cascade", [{"model": "test/gpt", "gate": {"type": "regex", "pattern": "("}}],
         "does not compile"),
        ("series", [{"model": "test/gpt", "gate": {"type": "json"}}], "only cascade steps"),
        ("series", [{"model": "test/gpt", "template": "no placeholder"}], "must use {input}"),
        ("parallel", [{"model": "test/gpt"}], "aggregate.type is required"),
        ("sequential", [{"model": "test/gpt"}], "\"sequential\" is not a valid choice"),
    ],
)  # fmt: skip
def test_bad_definitions_are_refused_with_what_is_wrong(
    world: World, settings: Any, kind: str, steps: list[dict[str, Any]], message: str
) -> None:
    settings.PIPELINE_MAX_STEPS = 2

    response = world.pipeline_create("bad", kind, steps)

    assert response.status_code == 400, response.content
    assert message in str(response.json()), response.json()


def test_versions_members_and_duplicates(world: World) -> None:
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    assert world.pipeline_create("p", "cascade", [{"model": "test/gpt"}]).status_code == 201
    assert world.pipeline_create("p", "cascade", [{"model": "test/gpt"}]).status_code == 409

    changed = admin.post(f"{URL}/p/versions", {"kind": "series", "steps": [
        {"model": "test/gpt"}, {"model": "test/claude"}]}, format="json")  # fmt: skip

    assert changed.status_code == 201
    assert (changed.json()["version"], changed.json()["kind"]) == (2, "series")
    versions = admin.get(f"{URL}/p/versions").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert admin.get(URL).json()["results"][0]["model"] == "pipeline/p"
    member = member_add(world.organization, Role.MEMBER)
    as_member = key_client(key_make(world.organization, scope=KeyScope.MANAGE, created_by=member))
    assert as_member.get(f"{URL}/p").status_code == 200
    refused = as_member.post(URL, {"slug": "q", "kind": "cascade", "steps": [{"model": "test/gpt"}]},
                             format="json")  # fmt: skip
    assert refused.status_code == 403


def test_a_tool_screenshot_sent_to_a_pipeline_on_a_text_only_model_is_a_placeholder(
    world: World,
) -> None:
    """As on a model: the step's model reads no images, so the tool's screenshot (media the
    /v1/messages ingress lifted out of a tool_result) is sent as a placeholder, not refused."""
    _text_only(world)
    assert world.pipeline_create("plain", "cascade", [{"model": "test/plain"}]).status_code == 201
    client = world.anthropic_client()

    message = client.messages.create(
        model="pipeline/plain",
        max_tokens=50,
        tools=[SCREENSHOT_TOOL],  # type: ignore[list-item]
        messages=_agent_turns(),  # type: ignore[arg-type]
    )

    assert message.model == "test/plain"
    sent = str(world.last_upstream()["body"])
    assert "[image omitted: this model reads no image input]" in sent
    assert "Taken." in sent and "iVBORw0KGgo=" not in sent
    assert len(world.upstream_requests()) == 1
