"""Bounds on router selection's inputs (security review F1, F2, F4, F8): a select prompt is
ranked on its last 16,000 characters on every path; ``models`` and a router's candidates have a
size cap; selects have a rate-limit bucket of their own per key; a Not Diamond feedback metric's
name is bounded."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from routing import routers
from routing.gateway import limits, planning
from routing.gateway.provider_preferences import MAX_PROVIDER_NAMES
from routing.gateway.request_shape import MAX_TOOLS
from routing.models import SelectionSession
from routing.router_request import MAX_CANDIDATES, MAX_MODELS, PROMPT_CHARS
from tests.factories import key_client, member_add
from tests.routing.world import World

SELECT = "/api/v1/routers/auto/select"  # the platform router: ranked by the heuristic here
ND_SELECT = "/api/notdiamond/v2/modelRouter/modelSelect"
ND_FEEDBACK = "/api/notdiamond/v2/report/metrics/feedback"
PROVIDERS = [{"provider": "test", "model": "gpt"}, {"provider": "test", "model": "claude"}]
LONG = "word " * 20_000  # 100,000 characters


def lean_select(world: World, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    """A keyed JSON select: the production app answers it from the gateway (model_select)."""
    auth = {"Authorization": f"Bearer {key or world.key}"}
    return httpx.post(f"{world.gateway_url}{SELECT}", json=body, headers=auth, timeout=30)


def test_a_long_select_prompt_is_ranked_on_its_last_16000_characters_on_every_path(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = routers.heuristic_decision

    def spy(catalog: Any, tradeoff: float, candidates: Any, prompt: str, *rest: Any) -> Any:
        seen.append(prompt)
        return real(catalog, tradeoff, candidates, prompt, *rest)

    monkeypatch.setattr(routers, "heuristic_decision", spy)
    drf = key_client(world.key)

    lean = lean_select(world, {"prompt": LONG})
    view = drf.post(SELECT, {"prompt": LONG}, format="json")
    messages = drf.post(SELECT, {"messages": [{"role": "user", "content": LONG}]}, format="json")
    nd = drf.post(
        ND_SELECT,
        {"messages": [{"role": "user", "content": LONG}], "llm_providers": PROVIDERS},
        format="json",
    )

    assert [r.status_code for r in (lean, view, messages, nd)] == [200] * 4, nd.json()
    assert [len(p) for p in seen] == [PROMPT_CHARS] * 4
    assert seen[0] == seen[1] == LONG[-PROMPT_CHARS:]  # the same text on both select paths


def test_a_models_list_over_the_cap_is_a_400_before_any_upstream_call(world: World) -> None:
    before = len(world.fake.requests)
    body = {
        "model": "test/gpt",
        "models": [f"someone/model-{i}" for i in range(MAX_MODELS + 1)],
        "messages": [{"role": "user", "content": "hi"}],
    }

    response = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {world.key}"},
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "models" and f"at most {MAX_MODELS}" in error["message"]
    assert len(world.fake.requests) == before


def test_router_candidates_over_the_cap_are_a_400_on_chat_and_on_both_select_paths(
    world: World,
) -> None:
    many = [f"someone/model-{i}" for i in range(MAX_CANDIDATES + 1)]
    chat = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json={
            "model": "router/auto",
            "router": {"candidates": many},
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"Authorization": f"Bearer {world.key}"},
    )
    lean = lean_select(world, {"prompt": "hi", "candidates": many})
    view = key_client(world.key).post(SELECT, {"prompt": "hi", "candidates": many}, format="json")

    assert chat.status_code == 400 and chat.json()["error"]["param"] == "router.candidates"
    assert f"at most {MAX_CANDIDATES}" in chat.json()["error"]["message"]
    assert lean.status_code == view.status_code == 400
    assert lean.json() == view.json()
    assert view.json()["error"]["param"] == "candidates"


@pytest.mark.parametrize(
    ("field", "param"),
    [
        ({"provider": {"order": [f"p{i}" for i in range(MAX_PROVIDER_NAMES + 1)]}}, "provider.order"),
        ({"provider": {"only": [f"p{i}" for i in range(MAX_PROVIDER_NAMES + 1)]}}, "provider.only"),
        ({"provider": {"ignore": [f"p{i}" for i in range(MAX_PROVIDER_NAMES + 1)]}}, "provider.ignore"),
        ({"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(MAX_TOOLS + 1)]}, "tools"),
    ],
)  # fmt: skip
def test_provider_lists_and_tools_over_their_caps_are_a_400(
    world: World, field: dict[str, Any], param: str
) -> None:
    """Each provider name is slugified (~7 µs): a 20 MB list was ~30 s of the event loop."""
    before = len(world.fake.requests)
    body = {"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}], **field}

    response = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {world.key}"},
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert len(world.fake.requests) == before


class _CountingId(str):
    """A model id that counts how often it is compared for equality."""

    compared = [0]

    def __eq__(self, other: object) -> bool:
        _CountingId.compared[0] += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_model_ids_are_deduplicated_in_linear_comparisons() -> None:
    """Was ``candidate not in ids`` on a list: n²/2 comparisons (30k ids, 10 s of event loop)."""
    _CountingId.compared[0] = 0
    ids = [_CountingId(f"someone/model-{i}") for i in range(MAX_MODELS - 1)]

    found = planning._model_ids({"model": "test/gpt", "models": [*ids, ids[0]]})

    assert found == ["test/gpt", *ids]
    assert _CountingId.compared[0] <= 2 * MAX_MODELS  # the list's `in`: over 500


@pytest.mark.usefixtures("one_rate_limit_window")
def test_selects_have_their_own_bucket_of_rpm_times_the_factor(world: World, settings: Any) -> None:
    settings.ROUTER_SELECT_RPM_FACTOR = 2
    key = world.key_for(rpm=1)  # two selects a minute, one request
    drf = key_client(key)
    nd_body = {"messages": [{"role": "user", "content": "hi"}], "llm_providers": PROVIDERS}

    first = lean_select(world, {"prompt": "hi"}, key=key)
    second = drf.post(SELECT, {"prompt": "hi"}, format="json")
    lean_over = lean_select(world, {"prompt": "hi"}, key=key)
    view_over = drf.post(SELECT, {"prompt": "hi"}, format="json")
    nd_over = drf.post(ND_SELECT, nd_body, format="json")
    chat = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json={"model": "test/gpt", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )

    assert [first.status_code, second.status_code] == [200, 200]
    for over in (lean_over, view_over, nd_over):
        assert over.status_code == 429
        assert over.headers["retry-after"] == "30"
        # The window's end in epoch ms, as the key's own 429 says it (OpenRouter's header).
        assert over.headers["x-ratelimit-reset"] == str((limits._window()[0] + 1) * 60_000)
        error = over.json()["error"]
        assert error["type"] == "rate_limited" and "2 router selects" in error["message"]
    assert chat.status_code == 200  # selects do not count against the key's rpm


@pytest.mark.usefixtures("one_rate_limit_window")
def test_a_key_without_rpm_gets_the_default_select_ceiling(world: World, settings: Any) -> None:
    settings.ROUTER_SELECT_RPM_DEFAULT = 1
    nd_body = {"messages": [{"role": "user", "content": "hi"}], "llm_providers": PROVIDERS}
    drf = key_client(world.key)

    first = drf.post(ND_SELECT, nd_body, format="json")
    over = drf.post(ND_SELECT, nd_body, format="json")

    assert first.status_code == 200 and over.status_code == 429
    assert SelectionSession.objects.filter(organization=world.organization).count() == 1


def signed_in(world: World) -> APIClient:
    """A dashboard session of a new member of the world's organization (no key)."""
    client = APIClient()
    client.force_login(member_add(world.organization))
    session = client.session
    session["current_organization_id"] = world.organization.pk
    session.save()
    return client


@pytest.mark.usefixtures("one_rate_limit_window")
def test_selects_made_signed_in_have_a_bucket_per_person(world: World, settings: Any) -> None:
    """The dashboard's selects (a session, no key) were not counted at all."""
    settings.ROUTER_SELECT_RPM_DEFAULT = 2
    person, someone_else = signed_in(world), signed_in(world)
    nd_body = {"messages": [{"role": "user", "content": "hi"}], "llm_providers": PROVIDERS}

    first = person.post(SELECT, {"prompt": "hi"}, format="json")
    second = person.post(ND_SELECT, nd_body, format="json")
    over = person.post(SELECT, {"prompt": "hi"}, format="json")
    nd_over = person.post(ND_SELECT, nd_body, format="json")
    other = someone_else.post(SELECT, {"prompt": "hi"}, format="json")
    keyed = key_client(world.key).post(SELECT, {"prompt": "hi"}, format="json")

    assert [first.status_code, second.status_code] == [200, 200], second.content
    for refused in (over, nd_over):
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert refused.headers["x-ratelimit-limit-requests"] == "2"
        assert refused.headers["x-ratelimit-reset"] == str((limits._window()[0] + 1) * 60_000)
        error = refused.json()["error"]
        assert error["type"] == "rate_limited" and "2 router selects" in error["message"]
    assert other.status_code == keyed.status_code == 200  # buckets of their own


def test_a_feedback_metric_name_is_bounded(world: World) -> None:
    drf = key_client(world.key)
    selected = drf.post(
        ND_SELECT,
        {"messages": [{"role": "user", "content": "hi"}], "llm_providers": PROVIDERS},
        format="json",
    ).json()
    chosen = selected["providers"][0]
    report = {"session_id": selected["session_id"], "provider": chosen}

    long_name = drf.post(ND_FEEDBACK, {**report, "feedback": {"a" * 65: 1}}, format="json")
    longest = drf.post(ND_FEEDBACK, {**report, "feedback": {"a" * 64: 1}}, format="json")

    assert long_name.status_code == 400 and long_name.json()["error"]["param"] == "feedback"
    assert longest.status_code == 200
    assert SelectionSession.objects.get(id=selected["session_id"]).feedback == {"a" * 64: 1}
