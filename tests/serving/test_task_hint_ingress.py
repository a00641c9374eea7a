"""A request's task hint on every inference API, through the real SDKs: ``router: {"task": …}``
on ``/v1/messages`` (anthropic), ``/v1/responses`` and ``/v1/completions`` (openai) decides as
on chat completions (``test_task_hint_serving``: its quiz router, whose two subtasks' prompts do
not tell them apart, so only the hint picks each subtask's model at tradeoff 0), a malformed
task is the same 400 naming ``router.task``, and an unknown one is dropped and said so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from accounts.models import Role
from tests.factories import dashboard_client, key_client, member_add
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR
from tests.serving.test_task_hint_serving import PROMPT, _train
from training.predictor import NO_HINT_ROW

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

# Each API's call for ``router/quiz`` with the ``router`` extension: (served model, routing
# object, response headers).
Call = Callable[[World, dict[str, Any]], tuple[str, dict[str, Any], Any]]


def _messages(world: World, router: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    client = world.anthropic_client()
    raw = client.messages.with_raw_response.create(
        model="router/quiz",
        max_tokens=32,
        messages=[{"role": "user", "content": PROMPT}],
        extra_body={"router": router},
    )
    message = raw.parse()
    return message.model, message.model_extra["routing"], raw.headers


def _responses(world: World, router: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    raw = world.openai_client().responses.with_raw_response.create(
        model="router/quiz", input=PROMPT, extra_body={"router": router}
    )
    response = raw.parse()
    return response.model, response.model_extra["routing"], raw.headers


def _completions(world: World, router: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    raw = world.openai_client().completions.with_raw_response.create(
        model="router/quiz", prompt=PROMPT, max_tokens=32, extra_body={"router": router}
    )
    completion = raw.parse()
    return completion.model, completion.model_extra["routing"], raw.headers


CALLS = pytest.mark.parametrize(
    "call", [_messages, _responses, _completions], ids=["messages", "responses", "completions"]
)


@CALLS
def test_the_task_changes_the_model_on_every_api(world: World, call: Call) -> None:
    _train(world)

    a_model, a_routing, a_headers = call(world, {"tradeoff": 0, "task": "quiz/a"})
    b_model, b_routing, _ = call(world, {"tradeoff": 0, "task": " quiz/b "})
    _, unknown, unknown_headers = call(world, {"tradeoff": 0, "task": "poetry"})

    assert (a_model, b_model) == (CHEAP, DEAR)
    assert a_routing["task_hint"] == {"task": "quiz/a", "applied": "quiz/a", "reason": None}
    assert b_routing["task_hint"] == {"task": "quiz/b", "applied": "quiz/b", "reason": None}
    assert "x-routerhub-dropped" not in a_headers
    assert unknown["task_hint"] == {"task": "poetry", "applied": None, "reason": NO_HINT_ROW}
    assert unknown_headers["x-routerhub-dropped"] == "router.task"
    _assert_shown(world, a_headers["x-generation-id"], a_routing["task_hint"])
    _assert_shown(world, unknown_headers["x-generation-id"], unknown["task_hint"])


def _assert_shown(world: World, generation_id: str, hint: dict[str, Any]) -> None:
    """The generation lookup and the dashboard's generation page show the request's task."""
    world.usage_record(generation_id)  # settled
    shown = key_client(world.key).get(f"/api/v1/generation?id={generation_id}").json()
    owner = dashboard_client(member_add(world.organization, Role.OWNER), world.organization)
    page = owner.get(f"/dashboard/generations/{generation_id}/").content.decode()

    assert shown["task_hint"] == hint
    assert f"Task hint <code>{hint['task']}</code>" in page
    assert (f"decided with <code>{hint['applied']}</code>" in page) == (hint["applied"] is not None)


@CALLS
def test_a_malformed_task_is_a_400_naming_router_task_on_every_api(
    world: World, call: Call
) -> None:
    hidden = ("math\u202egnp", "a\u2028b", "a\u2066b\u2069", "quiz\u200b/a", "quiz/\ufeffa")
    for task in ("x" * 201, 7, "", ["quiz/a"], "quiz\n/a", "quiz\x85a", *hidden):
        with pytest.raises((anthropic.BadRequestError, openai.BadRequestError)) as raised:
            call(world, {"task": task})

        body: Any = raised.value.body
        error = body.get("error", body)
        assert raised.value.status_code == 400
        assert error["param"] == "router.task", (task, body)
        assert "router.task must be a task label" in error["message"]
