"""A key's ``allowed_models`` hold for every model a request names, on every ingress.

The attack: a key allowed only ``router/auto`` sent ``models: ["test/claude"]`` beside it (or
``router.candidates``) and the platform router, ranking among the request's own list, served
exactly the model the key was kept from; a ``models`` fallback entry the key may not use was
skipped silently. Each must be a 403 naming the model, with nothing sent upstream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.models import KeyScope
from tests.factories import key_client
from tests.routing.world import World, base_catalog, embedding_models

HELLO = [{"role": "user", "content": "hello"}]


def _post(world: World, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return httpx.post(f"{world.gateway_url}{path}", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"})  # fmt: skip


def _refused(answer: httpx.Response, model_id: str, param: str) -> None:
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and f"'{model_id}'" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": HELLO}),
        ("/v1/completions", {"prompt": "hello"}),
        ("/v1/responses", {"input": "hello"}),
    ],
)
def test_a_router_key_cannot_name_the_routers_candidates(
    world: World, path: str, body: dict[str, Any]
) -> None:
    router_only = world.key_for(allowed_models=["router/auto"])

    listed = _post(world, path, body | {"model": "router/auto", "models": ["test/claude"]},
                   router_only)  # fmt: skip
    candidates = _post(world, path, body | {"model": "router/auto",
                       "router": {"candidates": ["test/claude"]}}, router_only)  # fmt: skip

    _refused(listed, "test/claude", "models")
    _refused(candidates, "test/claude", "router.candidates")
    assert world.upstream_requests() == []


def test_a_fallback_the_key_may_not_use_is_refused_not_skipped(world: World) -> None:
    gpt_only = world.key_for(allowed_models=["test/gpt"])
    both = world.key_for(allowed_models=["test/gpt", "router/auto", "test/claude"])
    body = {"model": "test/gpt", "models": ["test/claude"], "messages": HELLO}

    refused = _post(world, "/v1/chat/completions", body, gpt_only)
    routed = _post(world, "/v1/chat/completions", body | {"model": "router/auto"}, both)
    fallback = _post(world, "/v1/chat/completions", body, both)

    _refused(refused, "test/claude", "models")
    assert routed.status_code == 200 and routed.json()["model"] == "test/claude"
    assert fallback.status_code == 200


def test_embeddings_fallbacks_are_checked(world: World) -> None:
    world.catalog(embedding_models(base_catalog(world.fake_url)))
    embed_only = world.key_for(allowed_models=["test/embed"])

    answer = _post(world, "/v1/embeddings",
                   {"model": "test/embed", "models": ["test/embed-g"], "input": "hi"},
                   embed_only)  # fmt: skip

    _refused(answer, "test/embed-g", "models")


def test_selection_candidates_are_checked(world: World) -> None:
    gpt_only = world.key_for(allowed_models=["test/gpt"])
    select = {"messages": HELLO, "candidates": ["test/gpt", "test/claude"]}
    offered = [{"provider": "test", "model": "gpt"}, {"provider": "test", "model": "claude"}]

    lean = _post(world, "/api/v1/routers/auto/select", select, gpt_only)
    drf = key_client(gpt_only).post("/api/v1/routers/auto/select", select, format="json")
    nd = key_client(gpt_only).post("/api/notdiamond/v2/modelRouter/modelSelect",
                                   {"messages": HELLO, "llm_providers": offered},
                                   format="json")  # fmt: skip
    allowed = _post(world, "/api/v1/routers/auto/select", select | {"candidates": ["test/gpt"]},
                    gpt_only)  # fmt: skip

    _refused(lean, "test/claude", "candidates")
    assert drf.status_code == 403 and drf.json()["error"]["param"] == "candidates"
    assert nd.status_code == 403 and nd.json()["error"]["param"] == "llm_providers"
    assert allowed.status_code == 200 and allowed.json()["chosen"] == "test/gpt"


def test_a_pipeline_is_held_to_the_same_allow_list_rule_as_chat(world: World) -> None:
    """``pipeline/<slug>`` is refused exactly as chat refuses a model (the shared check: 403,
    ``param`` and ``metadata.model`` naming it, nothing sent); a key allowed the pipeline may call
    its steps (the contract, as a key allowed a router may call its picks)."""
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))
    steps = [{"model": "test/claude"}]
    created = admin.post("/api/v1/pipelines", {"slug": "p", "kind": "cascade", "steps": steps},
                         format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    step_only = world.key_for(allowed_models=["test/claude"])
    body = {"model": "pipeline/p", "messages": HELLO}

    refused = _post(world, "/v1/chat/completions", body, step_only)
    refused_anthropic = _post(world, "/v1/messages", body | {"max_tokens": 16}, step_only)

    for answer in (refused, refused_anthropic):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["metadata"]["model"] == "pipeline/p"
    _refused(refused, "pipeline/p", "model")
    assert world.upstream_requests() == []
    served = _post(
        world, "/v1/chat/completions", body, world.key_for(allowed_models=["pipeline/p"])
    )
    assert (
        served.status_code == 200
        and served.json()["pipeline"]["steps"][0]["model"] == "test/claude"
    )
