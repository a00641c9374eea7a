"""A key allowed a router may narrow it to some of its own candidates, on every ingress that
names candidates (chat's ``router.candidates`` and ``models``, ``select``'s ``candidates``, Not
Diamond ``modelSelect``'s ``llm_providers``): the router could pick each of them unasked, so
naming them grants nothing new. A model outside the router's candidates is still a 403 naming it,
and a key allowed a model but not the router gains nothing from the router's candidates."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from accounts.models import PLATFORM_ORGANIZATION_SLUG, Organization
from routing.routers import router_cache_clear
from tests.factories import key_client
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, train_router
from training.models import Router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

HELLO = [{"role": "user", "content": "Write a short poem about the lantern at dawn."}]
OUTSIDE = "test/gemini"  # a catalog model, not one of router/support's candidates
SELECT = "/api/v1/routers/support/select"
MODEL_SELECT = "/api/notdiamond/v2/modelRouter/modelSelect"


def _provider(model_id: str) -> dict[str, str]:
    provider, model = model_id.split("/")
    return {"provider": provider, "model": model}


def _answers(world: World, key: str, candidates: list[str]) -> dict[str, httpx.Response | Any]:
    """The same candidates named on each ingress: chat (both ways), lean and DRF select, and
    Not Diamond modelSelect."""
    chat = {"model": "router/support", "messages": HELLO}
    headers = {"authorization": f"Bearer {key}"}

    def gateway(path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{world.gateway_url}{path}", json=body, headers=headers, timeout=10)

    offered = [_provider(c) for c in candidates]
    nd = {"messages": HELLO, "llm_providers": offered, "preference_id": "support"}
    return {
        "router.candidates": gateway("/v1/chat/completions",
                                     chat | {"router": {"candidates": candidates}}),
        "models": gateway("/v1/chat/completions", chat | {"models": candidates}),
        "candidates": gateway(SELECT, {"messages": HELLO, "candidates": candidates}),
        "drf": key_client(key).post(SELECT, {"messages": HELLO, "candidates": candidates},
                                    format="json"),
        "llm_providers": key_client(key).post(MODEL_SELECT, nd, format="json"),
    }  # fmt: skip


def _refused(answer: Any, model_id: str, param: str) -> None:
    assert answer.status_code == 403, answer.content
    error = answer.json()["error"]
    assert error["param"] == param and f"'{model_id}'" in error["message"], error
    assert error["metadata"]["model"] == model_id


def test_a_router_key_may_narrow_the_router_to_its_own_candidates(world: World) -> None:
    train_router(world)
    router_only = world.key_for(allowed_models=["router/support"])
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=router_only, max_retries=0)

    narrowed = client.chat.completions.create(
        model="router/support", messages=HELLO, extra_body={"router": {"candidates": [CHEAP]}}
    )
    answers = _answers(world, router_only, [DEAR])

    assert narrowed.model == CHEAP and narrowed.model_extra["routing"]["chosen"] == CHEAP
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.content)
    assert answers["router.candidates"].json()["model"] == DEAR
    assert answers["models"].json()["model"] == DEAR
    assert answers["candidates"].json()["chosen"] == answers["drf"].json()["chosen"] == DEAR
    assert answers["llm_providers"].json()["providers"] == [_provider(DEAR)]


def test_a_candidate_outside_the_router_is_refused_naming_it(world: World) -> None:
    train_router(world)
    router_only = world.key_for(allowed_models=["router/support"])
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=router_only, max_retries=0)

    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(
            model="router/support",
            messages=HELLO,
            extra_body={"router": {"candidates": [CHEAP, OUTSIDE]}},
        )
    answers = _answers(world, router_only, [CHEAP, OUTSIDE])

    assert f"'{OUTSIDE}'" in refused.value.message
    for param in ("router.candidates", "models", "candidates", "llm_providers"):
        _refused(answers[param], OUTSIDE, param)
    _refused(answers["drf"], OUTSIDE, "candidates")
    assert world.upstream_requests() == []


def test_a_key_allowed_a_model_but_not_the_router_gains_nothing(world: World) -> None:
    train_router(world)
    dear_only = world.key_for(allowed_models=[DEAR])

    answers = _answers(world, dear_only, [DEAR, CHEAP])

    _refused(answers["router.candidates"], "router/support", "model")
    _refused(answers["models"], "router/support", "model")
    # select names no model to call, only candidates: each must be allowed itself.
    _refused(answers["candidates"], CHEAP, "candidates")
    _refused(answers["drf"], CHEAP, "candidates")
    _refused(answers["llm_providers"], CHEAP, "llm_providers")
    assert world.upstream_requests() == []


@pytest.mark.parametrize("param", ["router.candidates", "models"])
def test_an_untrained_platform_router_row_grants_no_candidates(world: World, param: str) -> None:
    # A failed first training (training.serving.router_train_now) leaves router/auto's row with
    # candidates but no version: it still ranks the whole catalog, so its candidates grant nothing.
    platform = Organization.objects.create(slug=PLATFORM_ORGANIZATION_SLUG, name="Platform")
    Router.objects.create(
        organization=platform, slug="auto", name="Platform", candidates=[CHEAP, OUTSIDE]
    )
    router_cache_clear()
    auto_only = world.key_for(allowed_models=["router/auto"])
    body: dict[str, Any] = {"model": "router/auto", "messages": HELLO}
    body |= {"models": [OUTSIDE]} if param == "models" else {"router": {"candidates": [OUTSIDE]}}

    answer = httpx.post(f"{world.gateway_url}/v1/chat/completions", json=body,
                        headers={"authorization": f"Bearer {auto_only}"}, timeout=10)  # fmt: skip

    _refused(answer, OUTSIDE, param)
    assert world.upstream_requests() == []
