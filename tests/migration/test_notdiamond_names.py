"""Names and preference ids Not Diamond's SDK sends are checked like RouterHub's own: a router is
made only from a valid name or slug, and ``trainCustomRouter`` makes none for a dataset that does
not validate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accounts.models import KeyScope
from tests.factories import key_make
from tests.migration.test_notdiamond import nd_rows
from tests.routing.world import World
from training.models import Router

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def run_sdk(world: World, key: str, calls: list[dict[str, Any]]) -> list[dict[str, str]]:
    script = Path(__file__).with_name("nd_sdk_names.py")
    args = {"key": key, "nd_url": f"{world.gateway_url}/api/notdiamond", "calls": calls}
    done = subprocess.run([sys.executable, str(script)], input=json.dumps(args), timeout=120,
                          capture_output=True, text=True, env=dict(os.environ), check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def refused(outcome: dict[str, str]) -> dict[str, Any]:
    """The RouterHub error inside the SDK's exception text."""
    text = outcome["error"]
    return json.loads(text[text.index("{") :])["error"]  # type: ignore[no-any-return]


def test_the_sdks_names_and_preference_ids_are_checked_before_a_router_is_made(
    world: World,
) -> None:
    manage_key = key_make(world.organization, scope=KeyScope.MANAGE)
    rows = nd_rows()[:60]
    unscored = [{**row, "test/gpt/score": "x"} for row in rows]
    names = ["Acme\u202egnp.exe", "Acme support"]
    slugs = ["a" * 80, "a/b\nc", "a\u202eb"]

    outcomes = run_sdk(
        world,
        manage_key,
        [{"create": name} for name in names]
        + [{"fit": slug, "rows": rows} for slug in slugs]
        + [{"fit": "fresh-router", "rows": unscored}],
    )

    assert refused(outcomes[0])["param"] == "name"
    assert "bidirectional" in refused(outcomes[0])["message"]
    created = outcomes[1]["preference_id"]
    for outcome in outcomes[2:5]:
        assert refused(outcome)["param"] == "preference_id", outcome
        assert "router slug" in refused(outcome)["message"]
    assert refused(outcomes[5])["param"] == "dataset_file"
    routers = Router.objects.filter(organization=world.organization)
    assert {(r.slug, r.name) for r in routers} == {(created, "Acme support")}
