"""Not Diamond migration: their SDK, pointed at RouterHub, trains a custom router from a Not
Diamond-format dataset, selects models with it and reports feedback; the shapes' errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from accounts.models import ApiKey, KeyScope
from routing.fake_upstream.answers import answer_text
from routing.models import SelectionSession
from tests.factories import key_client, key_make, organization_make
from tests.routing.world import World, base_catalog, endpoint, model
from tests.training.conftest import synthetic_frame
from training.models import Router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

WEAK, STRONG = "test/gpt", "test/claude"
WEAK_TOOLLESS = "test/gpt"  # the base catalog's first model, redeclared without tools
PROMPTS = ["Compute 17 + 42 * 3.", "Write a short poem about the lantern at dawn. (#1000)"]
SELECT = "/api/notdiamond/v2/modelRouter/modelSelect"
FEEDBACK = "/api/notdiamond/v2/report/metrics/feedback"
LATENCY = "/api/notdiamond/v2/report/metrics/latency"
PROVIDERS = [{"provider": "test", "model": "gpt"}, {"provider": "test", "model": "claude"}]


def nd_rows() -> list[dict[str, Any]]:
    """Not Diamond's joint layout: a prompt column and ``<provider>/<model>/score`` columns."""
    frame = synthetic_frame(rows=180)
    return [
        {"question": r["prompt"], f"{WEAK}/score": r["math-model/score"],
         f"{STRONG}/score": r["prose-model/score"]}
        for r in frame.to_dict("records")
    ]  # fmt: skip


def run_sdk(world: World, key: str, **args: Any) -> dict[str, Any]:
    env = {**os.environ, "NOTDIAMOND_API_URL": f"{world.gateway_url}/api/notdiamond"}
    script = Path(__file__).with_name("nd_sdk_client.py")
    done = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps({"key": key, "rows": nd_rows(), "prompts": PROMPTS, **args}),
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_not_diamond_sdk_trains_selects_and_reports_feedback(world: World) -> None:
    manage_key = key_make(world.organization, scope=KeyScope.MANAGE)

    result = run_sdk(world, manage_key, tradeoff="cost")

    router = Router.objects.get(organization=world.organization, slug=result["preference_id"])
    assert router.active_version is not None and sorted(router.candidates) == [STRONG, WEAK]
    manage = key_client(manage_key)
    for prompt, selection in zip(PROMPTS, result["selections"], strict=True):
        ours = manage.post(f"/api/v1/routers/{router.slug}/select",
                           {"prompt": prompt, "tradeoff": 1}, format="json").json()  # fmt: skip
        assert selection["model"] == ours["chosen"]
        assert selection["feedback"] is True
        session = SelectionSession.objects.get(id=selection["session_id"])
        assert session.organization_id == world.organization.pk
        assert (session.router, session.chosen) == (f"router/{router.slug}", ours["chosen"])
        assert session.feedback == {"accuracy": 1} and session.feedback_model == ours["chosen"]


def trained_router(world: World) -> str:
    from tests.serving.test_router_serving import train_router

    train_router(world, slug="nd")
    return "nd"


def test_model_select_shapes_and_errors(world: World) -> None:
    slug = trained_router(world)
    inference = key_client(world.key)
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "llm_providers": PROVIDERS,
            "preference_id": slug, "metric": "accuracy", "max_model_depth": 2}  # fmt: skip

    selected = inference.post(SELECT, body, format="json")
    unknown = inference.post(SELECT, {**body, "preference_id": "nope"}, format="json")
    outside = inference.post(SELECT, {**body, "llm_providers": [{"provider": "openai",
                             "model": "gpt-4o"}]}, format="json")  # fmt: skip
    tradeoff = inference.post(SELECT, {**body, "tradeoff": "speed"}, format="json")
    no_messages = inference.post(SELECT, {**body, "messages": []}, format="json")

    assert selected.status_code == 200, selected.json()
    assert [p["model"] for p in selected.json()["providers"]] in (
        ["gpt", "claude"],
        ["claude", "gpt"],
    )
    assert set(selected.json()) == {"providers", "session_id"}
    assert (
        unknown.status_code == 404
        and "preference_id is a RouterHub router slug" in (unknown.json()["error"]["message"])
    )
    assert (
        outside.status_code == 400
        and "is a candidate of router/nd" in (outside.json()["error"]["message"])
    )
    assert tradeoff.status_code == 400
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"


def selected_session(world: World, prompt: str) -> str:
    """A model-select session on a trained router, made with the world's inference key."""
    slug = trained_router(world)
    return key_client(world.key).post(  # type: ignore[no-any-return]
        SELECT,
        {"messages": [{"role": "user", "content": prompt}], "llm_providers": PROVIDERS,
         "preference_id": slug},
        format="json",
    ).json()["session_id"]  # fmt: skip


def test_feedback_is_per_session_and_per_organization(world: World) -> None:
    inference = key_client(world.key)
    session_id = selected_session(world, PROMPTS[1])
    stranger = key_client(key_make(organization_make(name="Other")))
    feedback = {"session_id": session_id, "provider": PROVIDERS[0], "feedback": {"accuracy": 0}}

    elsewhere = stranger.post(FEEDBACK, feedback, format="json")
    bad_value = inference.post(FEEDBACK, {**feedback, "feedback": {"accuracy": 7}}, format="json")
    unranked = inference.post(FEEDBACK, {**feedback, "provider": {"provider": "x" * 300,
                                                                  "model": "y"}}, format="json")  # fmt: skip
    recorded = inference.post(FEEDBACK, feedback, format="json")

    assert elsewhere.status_code == 404
    assert bad_value.status_code == 400
    # A model the session did not rank (here one too long to store: it was a 500) is refused.
    assert unranked.status_code == 400 and unranked.json()["error"]["param"] == "provider"
    assert recorded.status_code == 200
    assert SelectionSession.objects.get(id=session_id).feedback == {"accuracy": 0}


def test_training_a_custom_router_needs_a_management_key(world: World) -> None:
    inference = key_client(world.key)

    refused = inference.post("/api/notdiamond/v2/preferences/userPreferenceCreate",
                             {"name": "support"}, format="json")  # fmt: skip

    assert refused.status_code == 403


def test_custom_router_uploads_may_be_as_large_as_dataset_uploads(settings: Any) -> None:
    from routerhub.body_limits import body_limit

    upload_limit = body_limit("POST", "/api/notdiamond/v2/pzn/trainCustomRouter")

    assert upload_limit == body_limit("POST", "/api/v1/datasets") > settings.REQUEST_MAX_BODY_BYTES
    assert body_limit("POST", SELECT) == settings.REQUEST_MAX_BODY_BYTES


def test_the_sdks_create_acreate_and_stream_call_the_model_through_routerhub(world: World) -> None:
    catalog = base_catalog(world.fake_url)
    for name in ("gpt-4o", "gpt-4o-mini"):
        catalog["models"].append(model(f"openai/{name}"))
        catalog["endpoints"].append(endpoint(f"openai/{name}", "fake-openai", name))
    world.catalog(catalog)
    script = Path(__file__).with_name("nd_sdk_create.py")
    args = {"key": world.key, "base_url": f"{world.gateway_url}/v1",
            "nd_url": f"{world.gateway_url}/api/notdiamond"}  # fmt: skip

    done = subprocess.run([sys.executable, str(script)], input=json.dumps(args), timeout=120,
                          capture_output=True, text=True, check=False)  # fmt: skip

    # The provider's own names (gpt-4o) were a 404: the catalog knows them as openai/gpt-4o.
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    served = [r["body"]["model"] for r in world.upstream_requests("/v1/chat/completions")]
    assert len(served) == 3 and set(served) <= {"gpt-4o", "gpt-4o-mini"}
    assert result["model"] in ("openai/gpt-4o", "openai/gpt-4o-mini")
    assert result["text"] == answer_text(result["model"].split("/")[1], "Say hello.")
    answers = {answer_text(name, "Say hello.") for name in ("gpt-4o", "gpt-4o-mini")}
    assert result["async_text"] in answers and result["stream_text"] in answers
    assert SelectionSession.objects.get(id=result["session_id"]).chosen == result["model"]


TOOLS = [{"name": "calculate", "description": "Evaluate an arithmetic expression.",
          "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}]  # fmt: skip


def test_model_select_with_tools_offers_only_tool_callers_and_hash_content_stores_no_prompt(
    world: World,
) -> None:
    catalog = base_catalog(world.fake_url)
    catalog["models"][0] = model(WEAK_TOOLLESS, capabilities=["json", "streaming"])
    world.catalog(catalog)
    slug = trained_router(world)  # test/gpt (right on arithmetic) and test/claude
    world.organization.prompt_logging = True
    world.organization.save(update_fields=["prompt_logging"])
    args = {"key": world.key, "url": f"{world.gateway_url}/api/notdiamond", "prompt": PROMPTS[0],
            "llm_providers": ["test/gpt", "test/claude"],
            "calls": [{"preference_id": slug}, {"preference_id": slug, "tools": TOOLS},
                      {"preference_id": slug, "hash_content": True}]}  # fmt: skip

    done = subprocess.run([sys.executable, str(Path(__file__).with_name("nd_sdk_select.py"))],
                          input=json.dumps(args), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    (plain_id, plain), (tools_id, with_tools), (hashed_id, hashed) = json.loads(done.stdout)
    # Tools went unread: the model that cannot call them was chosen, and every prompt stored.
    assert plain == hashed == "test/gpt" and with_tools == "test/claude"
    assert SelectionSession.objects.get(id=tools_id).candidates == ["test/claude"]
    assert SelectionSession.objects.get(id=plain_id).prompt.endswith(PROMPTS[0])
    assert SelectionSession.objects.get(id=hashed_id).prompt == ""


def test_model_select_with_tools_keeps_candidates_outside_the_catalog(world: World) -> None:
    slug = trained_router(world)  # test/gpt and test/claude
    catalog = base_catalog(world.fake_url)
    catalog["models"][0] = model(WEAK_TOOLLESS, capabilities=["json", "streaming"])
    catalog["models"][1] |= {"enabled": False}
    world.catalog(catalog)  # test/claude is now a candidate outside the catalog
    inference = key_client(world.key)
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "tools": TOOLS,
            "llm_providers": PROVIDERS, "preference_id": slug}  # fmt: skip

    selected = inference.post(SELECT, body, format="json")
    toolless = inference.post(SELECT, {**body, "llm_providers": PROVIDERS[:1]}, format="json")

    # A candidate outside the catalog was dropped as unable to call tools: this was a 400.
    assert selected.status_code == 200, selected.content
    assert selected.json()["providers"] == [PROVIDERS[1]]
    assert SelectionSession.objects.get(id=selected.json()["session_id"]).candidates == [STRONG]
    assert toolless.status_code == 400 and toolless.json()["error"]["param"] == "tools"


def test_the_sdks_latency_report_is_stored_on_its_session(world: World) -> None:
    from notdiamond.llms.config import LLMConfig
    from notdiamond.llms.request import report_latency

    inference = key_client(world.key)
    session_id = selected_session(world, PROMPTS[0])
    config = LLMConfig(provider="test", model="claude", is_custom=True, context_length=128000,
                       input_price=3.0, output_price=15.0, latency=1.0)  # fmt: skip
    url = f"{world.gateway_url}/api/notdiamond"

    status = report_latency(session_id=session_id, llm_config=config, tokens_per_second=41.5,
                            notdiamond_api_key=world.key, nd_api_url=url)  # fmt: skip
    stranger = report_latency(session_id=session_id, llm_config=config, tokens_per_second=9.0,
                              notdiamond_api_key=key_make(organization_make(name="Other")),
                              nd_api_url=url)  # fmt: skip
    latency = "/api/notdiamond/v2/report/metrics/latency"
    body = {"session_id": session_id, "provider": PROVIDERS[0]}
    negative = inference.post(latency, {**body, "feedback": {"tokens_per_second": -1}},
                              format="json")  # fmt: skip
    text = inference.post(latency, {**body, "feedback": {"tokens_per_second": "fast"}},
                          format="json")  # fmt: skip
    huge = inference.post(latency, {**body, "feedback": {"tokens_per_second": 10**400}},
                          format="json")  # fmt: skip

    # The SDK reports after every call it makes (latency_tracking is on by default): was a 404.
    assert status == 200
    assert stranger == 404
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "feedback"
    assert text.status_code == 400 and text.json()["error"]["param"] == "feedback"
    # An integer past a float's range: was a 500 (OverflowError) from the finiteness check.
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "feedback"
    session = SelectionSession.objects.get(id=session_id)
    assert (session.tokens_per_second, session.latency_model) == (41.5, STRONG)
    assert session.latency_at is not None and session.feedback is None


def test_only_the_key_that_selected_or_its_makers_report_on_a_session(world: World) -> None:
    from notdiamond.llms.config import LLMConfig
    from notdiamond.llms.request import report_latency
    from notdiamond.metrics.request import feedback_request

    maker_key = world.key_for(name="maker")
    maker = ApiKey.objects.get(organization=world.organization, name="maker")
    selector = world.key_for(name="selector", created_by_key=maker)
    sibling = world.key_for(name="rating service")
    trained_router(world)
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "llm_providers": PROVIDERS,
            "preference_id": "nd"}  # fmt: skip
    session_id = key_client(selector).post(SELECT, body, format="json").json()["session_id"]
    config = LLMConfig(provider="test", model="gpt", is_custom=True, context_length=128000,
                       input_price=1.0, output_price=2.0, latency=1.0)  # fmt: skip
    url = f"{world.gateway_url}/api/notdiamond"

    def sdk_feedback(key: str, value: int) -> bool:
        return feedback_request(session_id=session_id, llm_config=config,  # type: ignore[no-any-return]
                                feedback_payload={"accuracy": value}, notdiamond_api_key=key,
                                nd_api_url=url)  # fmt: skip

    by_sibling = sdk_feedback(sibling, 0)
    sibling_latency = report_latency(session_id=session_id, llm_config=config,
                                     tokens_per_second=9.0, notdiamond_api_key=sibling,
                                     nd_api_url=url)  # fmt: skip
    report = {"session_id": session_id, "provider": PROVIDERS[0], "feedback": {"accuracy": 0}}
    refused = key_client(sibling).post(FEEDBACK, report, format="json")
    unknown = key_client(sibling).post(FEEDBACK, {**report, "session_id": str(uuid.uuid4())},
                                       format="json")  # fmt: skip
    untouched = SelectionSession.objects.get(id=session_id)
    by_selector = sdk_feedback(selector, 1)
    by_maker = sdk_feedback(maker_key, 0)
    by_management = sdk_feedback(world.key_for(scope=KeyScope.MANAGE), 1)

    # Any inference key of the organization reported on any session: was True and 200.
    assert by_sibling is False and sibling_latency == 404
    assert (untouched.feedback, untouched.tokens_per_second) == (None, None)
    error = refused.json()["error"]
    assert refused.status_code == unknown.status_code == 404 and error["param"] == "session_id"
    assert "report on it with the key that selected it or a management key" in error["message"]
    # Worded as for an unknown id: the answer does not tell whether the session exists.
    unknown_message = unknown.json()["error"]["message"]
    assert error["message"].replace(session_id, "ID") == unknown_message.replace(
        unknown_message.split("'")[1], "ID"
    )
    assert by_selector is True and by_maker is True and by_management is True
    assert SelectionSession.objects.get(id=session_id).feedback == {"accuracy": 1}


def _session_insert_as_an_old_pod(organization_id: int) -> str:
    """A session as code before routing 0017 writes it: neither ``key_id`` nor ``key_recorded``
    named, so the database's defaults fill them."""
    session_id = str(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO routing_selectionsession (id, organization_id, router, chosen, candidates,"
            " prompt, feedback_model, latency_model, created_at)"
            " VALUES (%s, %s, 'router/nd', %s, %s, '', '', '', now())",
            [session_id, organization_id, WEAK, json.dumps([WEAK, STRONG])],
        )
    return session_id


@pytest.mark.django_db
def test_sessions_without_their_key_recorded_keep_the_organization_wide_rule() -> None:
    organization = organization_make(name="Deploying")
    other = key_make(organization)
    key_make(organization, name="selector")
    selector_row = ApiKey.objects.get(organization=organization, name="selector")
    old = _session_insert_as_an_old_pod(organization.pk)
    new = SelectionSession.objects.create(
        id=uuid.uuid4(), organization=organization, router="router/nd", chosen=WEAK,
        candidates=[WEAK, STRONG], key=selector_row,
    )  # fmt: skip
    report = {"provider": PROVIDERS[0], "feedback": {"accuracy": 1}}
    latency = {"provider": PROVIDERS[0], "feedback": {"tokens_per_second": 7.5}}

    old_feedback = key_client(other).post(FEEDBACK, {**report, "session_id": old}, format="json")
    old_latency = key_client(other).post(LATENCY, {**latency, "session_id": old}, format="json")
    new_feedback = key_client(other).post(FEEDBACK, {**report, "session_id": str(new.id)},
                                          format="json")  # fmt: skip
    selector_row.delete()

    # Pre-0017 sessions (and an old pod's during the deploy) have no key: the organization's
    # inference keys were refused on them (a 404) by the per-key rule.
    stored = SelectionSession.objects.get(id=old)
    assert stored.key_recorded is False and new.key_recorded is True
    assert old_feedback.status_code == 200 and old_latency.status_code == 200
    assert (stored.feedback, stored.tokens_per_second) == ({"accuracy": 1}, 7.5)
    assert new_feedback.status_code == 404
    # No database constraint on the key (routing 0017): the ORM still forgets a deleted key.
    assert SelectionSession.objects.get(id=new.id).key_id is None


@pytest.mark.django_db
def test_the_schema_says_when_a_report_is_a_404_or_a_400(client: Any) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    for path in (FEEDBACK, LATENCY):
        responses = schema["paths"][path]["post"]["responses"]
        # Only the generic "No such object in this organization." on the old code.
        assert "nor a key it made selected" in responses["404"]["description"]
        assert "not a model the session ranked" in responses["400"]["description"]
        assert responses["404"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }


def test_a_sessions_first_latency_report_stands(world: World) -> None:
    """A session is one call, measured once: the same report again (the SDK retrying) is a 200,
    a different one a 409 naming the session, and the first stays stored (before, the second
    replaced it silently, 200)."""
    inference = key_client(world.key)
    body = {"session_id": selected_session(world, PROMPTS[0]), "provider": PROVIDERS[0]}
    first = {**body, "feedback": {"tokens_per_second": 41.5}}

    reported = inference.post(LATENCY, first, format="json")
    again = inference.post(LATENCY, first, format="json")
    other = inference.post(LATENCY, {**body, "feedback": {"tokens_per_second": 9.0}}, format="json")

    assert reported.status_code == again.status_code == 200
    assert again.json()["tokens_per_second"] == 41.5
    assert other.status_code == 409 and other.json()["error"]["param"] == "session_id"
    assert "already has its latency report" in other.json()["error"]["message"]
    session = SelectionSession.objects.get(id=body["session_id"])
    assert (session.tokens_per_second, session.latency_model) == (41.5, reported.json()["provider"])
