"""A request's task hint through the public API: ``task`` on select (lean gateway app and the DRF
view), ``router: {"task": …}`` on chat completions. Trained through the API on a file whose two
subtasks (``quiz/a``: CHEAP right, ``quiz/b``: DEAR right) have prompts that do not tell them
apart, so only the hint can pick each subtask's model."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from accounts.models import KeyScope
from tests.factories import key_client, key_make
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR
from tests.training.conftest import csv_bytes
from tests.training.helpers import upload
from tests.training.task_prompts import WORDS
from training.learner import artifacts
from training.models import RouterVersion
from training.predictor import HINT_NOT_AT_TRADEOFF, NO_HINT_ROW, predictor_for_version

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

PROMPT = "Quiz question: lantern river copper meadow?"


def _frame(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(rows):
        # three subtasks, so the upload reads "quiz/" as a level (task_labels.split_parents)
        task = ("quiz/a", "quiz/b", "quiz/c")[i % 3]
        cheap_right, dear_right = {"quiz/a": (0.95, 0.3), "quiz/b": (0.3, 0.95)}.get(
            task, (0.6, 0.6)
        )
        records.append(
            {
                "prompt": "Quiz question: " + " ".join(rng.choice(WORDS, size=8)) + f"? (#{i})",
                "task": task,
                f"{CHEAP}/score": int(rng.random() < cheap_right),
                f"{DEAR}/score": int(rng.random() < dear_right),
                f"{CHEAP}/cost": 0.001,
                f"{DEAR}/cost": 0.01,
            }
        )
    return pd.DataFrame.from_records(records)


def _train(world: World, options: dict[str, Any] | None = None) -> Any:
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    dataset = upload(manage, csv_bytes(_frame()), filename="quiz.csv").json()
    assert manage.get(f"/api/v1/datasets/{dataset['id']}").json()["status"] == "ready"
    body: dict[str, Any] = {"dataset": dataset["id"]}
    if options is not None:
        test = upload(manage, csv_bytes(_frame(seed=1)), filename="quiz-test.csv").json()
        body["options"] = {**options, "test_dataset": test["id"]}
    created = manage.post(
        "/api/v1/routers",
        {"slug": "quiz", "name": "Quiz", "candidates": [CHEAP, DEAR]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    run = manage.post("/api/v1/routers/quiz/train", body, format="json")
    assert manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()["status"] == "succeeded"
    return manage


def _select(world: World, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{world.gateway_url}/api/v1/routers/quiz/select",
        json=body,
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )


def test_the_task_on_select_decides_as_the_version_hint_says(world: World) -> None:
    manage = _train(world)
    predictor = predictor_for_version(RouterVersion.objects.get(router__slug="quiz", number=1))
    hint = predictor.router.task_hint
    assert hint is not None, "the blend wins out of fold on this file"

    chosen = {}
    for task in ("quiz/a", "quiz/b"):
        lean = _select(world, {"prompt": PROMPT, "tradeoff": 0, "task": task})
        drf = manage.post(
            "/api/v1/routers/quiz/select",
            {"prompt": PROMPT, "tradeoff": 0, "task": task},
            format="json",
        )
        assert lean.status_code == drf.status_code == 200, lean.text
        assert (
            lean.json()["task_hint"]
            == drf.json()["task_hint"]
            == {"task": task, "applied": task, "reason": None}
        )
        assert "x-routerhub-dropped" not in lean.headers
        row, _, _ = predictor.task_row(task)
        expected = predictor.rank(PROMPT, 0.0, None, None, None, row)[0].model
        assert lean.json()["chosen"] == drf.json()["chosen"] == expected
        chosen[task] = expected
    assert chosen == {"quiz/a": CHEAP, "quiz/b": DEAR}


def test_an_unknown_task_decides_without_the_hint_and_says_so(world: World) -> None:
    _train(world)
    plain = _select(world, {"prompt": PROMPT, "tradeoff": 0}).json()
    unknown = _select(world, {"prompt": PROMPT, "tradeoff": 0, "task": "poetry"})
    parent = _select(world, {"prompt": PROMPT, "tradeoff": 0, "task": "quiz/zzz"})

    assert unknown.status_code == 200
    assert unknown.headers["x-routerhub-dropped"] == "task"
    assert unknown.json()["task_hint"] == {
        "task": "poetry",
        "applied": None,
        "reason": NO_HINT_ROW,
    }
    assert unknown.json()["ranked"] == plain["ranked"]
    assert parent.json()["task_hint"] == {"task": "quiz/zzz", "applied": "quiz", "reason": None}
    assert "x-routerhub-dropped" not in parent.headers


def test_away_from_tradeoff_zero_a_task_decides_as_without_it_and_says_so(world: World) -> None:
    _train(world)
    for tradeoff in (0.5, 1):
        plain = _select(world, {"prompt": PROMPT, "tradeoff": tradeoff}).json()
        for task in ("quiz/a", "quiz/b"):
            hinted = _select(world, {"prompt": PROMPT, "tradeoff": tradeoff, "task": task})
            assert hinted.status_code == 200, hinted.text
            assert hinted.json()["ranked"] == plain["ranked"]  # never a dearer model
            assert hinted.json()["task_hint"] == {
                "task": task,
                "applied": None,
                "reason": HINT_NOT_AT_TRADEOFF,
            }
            assert hinted.headers["x-routerhub-dropped"] == "task"


@pytest.mark.parametrize("task", ["x" * 201, 7, "", "  ", ["quiz/a"], "quiz/a\x00", "quiz\n/a"])
def test_a_malformed_task_is_a_400_on_select_and_chat(world: World, task: Any) -> None:
    _train(world)
    selected = _select(world, {"prompt": PROMPT, "task": task})
    assert selected.status_code == 400, selected.text
    assert "task" in selected.text

    chat = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json={
            "model": "router/quiz",
            "messages": [{"role": "user", "content": PROMPT}],
            "router": {"task": task},
        },
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )
    assert chat.status_code == 400, chat.text
    assert chat.json()["error"]["param"] == "router.task"


def test_select_and_chat_read_a_task_with_surrounding_spaces_alike(world: World) -> None:
    _train(world)
    selected = _select(world, {"prompt": PROMPT, "tradeoff": 0, "task": " quiz/b "})
    chat = httpx.post(
        f"{world.gateway_url}/v1/chat/completions",
        json={
            "model": "router/quiz",
            "messages": [{"role": "user", "content": PROMPT}],
            "router": {"tradeoff": 0, "task": " quiz/b "},
        },
        headers={"Authorization": f"Bearer {world.key}"},
        timeout=30,
    )

    assert selected.status_code == chat.status_code == 200, (selected.text, chat.text)
    hint = {"task": "quiz/b", "applied": "quiz/b", "reason": None}
    assert selected.json()["task_hint"] == chat.json()["routing"]["task_hint"] == hint
    assert selected.json()["chosen"] == chat.json()["model"] == DEAR


def test_the_task_on_chat_completions_changes_the_model_and_an_unknown_one_is_dropped(
    world: World,
) -> None:
    _train(world)
    client = world.openai_client()

    def chat(task: str) -> Any:
        return client.chat.completions.with_raw_response.create(
            model="router/quiz",
            messages=[{"role": "user", "content": PROMPT}],
            extra_body={"router": {"tradeoff": 0, "task": task}},
        )

    a, b, unknown = chat("quiz/a"), chat("quiz/b"), chat("poetry")

    assert a.parse().model == CHEAP and b.parse().model == DEAR
    assert a.parse().model_extra["routing"]["task_hint"] == {
        "task": "quiz/a",
        "applied": "quiz/a",
        "reason": None,
    }
    assert "x-routerhub-dropped" not in a.headers
    assert unknown.headers["x-routerhub-dropped"] == "router.task"
    routing = unknown.parse().model_extra["routing"]
    assert routing["task_hint"] == {"task": "poetry", "applied": None, "reason": NO_HINT_ROW}


def test_a_held_out_report_with_the_task_column_shows_what_the_hints_are_worth(
    world: World,
) -> None:
    manage = _train(world, options={})
    report = manage.get("/api/v1/routers/quiz/versions/1/report").json()
    hints = report["evaluation"]["task_hints"]

    assert hints["hint_model"] is not None and hints["rows_hinted"] == 300
    assert hints["tradeoff_zero_with_hints"] > hints["tradeoff_zero_without_hints"] + 0.1
    assert hints["tradeoff_zero_with_hints"] >= hints["per_task_floor"] - 0.02
    assert hints["gain_over_no_hints_ci95"][0] > 0
    assert len(hints["curve_with_hints"]) == len(report["curve"])
    assert hints["sentence"].startswith("With each request's task as a hint")


def test_a_version_whose_artifacts_cannot_load_is_never_stored(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = artifacts.router_to_files

    def unloadable(router: Any) -> dict[str, bytes]:
        files = real(router)
        meta = json.loads(files[artifacts.ROUTER_FILE])
        meta["task_hint"]["tasks"][0] = "x" * 201  # what a too-long label made before
        files[artifacts.ROUTER_FILE] = json.dumps(meta).encode()
        return files

    monkeypatch.setattr(artifacts, "router_to_files", unloadable)
    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    dataset = upload(manage, csv_bytes(_frame()), filename="quiz.csv").json()
    manage.post(
        "/api/v1/routers",
        {"slug": "quiz", "name": "Quiz", "candidates": [CHEAP, DEAR]},
        format="json",
    )
    run = manage.post("/api/v1/routers/quiz/train", {"dataset": dataset["id"]}, format="json")

    assert manage.get(f"/api/v1/training-runs/{run.json()['id']}").json()["status"] == "failed"
    assert not RouterVersion.objects.filter(router__slug="quiz").exists()
