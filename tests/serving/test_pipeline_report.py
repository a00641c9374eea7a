"""A cascade evaluated before use (issue 17): ``GET /api/v1/pipelines/{slug}/report`` replays
it on the router's held-out rows for a sweep of pre-call gate thresholds, beside the router's
curve; read through the Python client, by a member, and refused with reasons when it cannot."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.storage import default_storage
from routerhub_client import RouterHub

from accounts.models import KeyScope, Role
from tests.factories import dashboard_client, key_client, key_make, member_add
from tests.routing.world import World
from tests.serving.test_router_serving import CHEAP, DEAR, train_router
from training.heldout import heldout_load, heldout_path
from training.models import RouterVersion

pytestmark = pytest.mark.usefixtures("eager_celery", "media")

GATE = {"type": "router_score", "router": "support", "min_score": 0.5}


def cascade(manage: Any, slug: str, steps: list[dict[str, Any]], kind: str = "cascade") -> None:
    body = {"slug": slug, "kind": kind, "steps": steps}
    created = manage.post("/api/v1/pipelines", body, format="json")
    assert created.status_code == 201, created.json()


def test_the_report_spans_the_cheap_model_alone_to_the_strong_model_alone(world: World) -> None:
    manage, _ = train_router(world)
    cascade(manage, "gated", [{"model": CHEAP, "pre_gate": GATE}, {"model": DEAR}])
    member = member_add(world.organization, Role.MEMBER)
    as_member = key_client(key_make(world.organization, scope=KeyScope.MANAGE, created_by=member))

    response = as_member.get("/api/v1/pipelines/gated/report")

    assert response.status_code == 200, response.json()
    report = response.json()
    version = RouterVersion.objects.get(router__slug="support")
    assert (report["router"], report["router_version"], report["steps"]) == (
        "support",
        version.number,
        [CHEAP, DEAR],
    )
    assert report["evaluation"]["rows"] == version.report["evaluation"]["rows"] == 180
    single = {m["id"]: m for m in version.report["models"]}
    cheapest, dearest = report["curve"][0], report["curve"][-1]
    # The lowest threshold serves every row with the cheap model, the highest with the strong
    # one: the ends of the curve are the router report's single-model points.
    assert cheapest["share"] == [1.0, 0.0] and dearest["share"] == [0.0, 1.0]
    assert cheapest["score"] == pytest.approx(single[CHEAP]["mean_score"], abs=1e-6)
    assert cheapest["cost"] == pytest.approx(single[CHEAP]["mean_cost"], rel=1e-5)
    assert dearest["score"] == pytest.approx(single[DEAR]["mean_score"], abs=1e-6)
    assert report["configured"]["min_score"] is None
    assert sum(report["configured"]["share"]) == pytest.approx(1.0)
    assert [p["cost"] for p in report["router_curve"]] == [
        p["cost"] for p in version.report["curve"]
    ]
    # On this data the cheap model's predicted score separates its prompts from the strong
    # model's, so a middle threshold beats either model alone.
    assert max(p["score"] for p in report["curve"]) > max(
        single[CHEAP]["mean_score"], single[DEAR]["mean_score"]
    )
    assert report["aiq"]["cascade"] > 0 and report["aiq"]["router"] > 0

    page = dashboard_client(member, world.organization).get("/dashboard/pipelines/gated/")
    html = page.content.decode()
    assert 'class="curve cascade"' in html and html.count('class="cascade-point"') == len(
        report["curve"]
    )
    assert f"AIQ: cascade {report['aiq']['cascade']:.4f}" in html

    client = RouterHub(base_url=world.gateway_url, api_key=world.key_for(scope=KeyScope.MANAGE))
    assert client.pipelines.report("gated", router="support")["curve"] == report["curve"]
    refusals_with_the_reason(manage)


def refusals_with_the_reason(manage: Any) -> None:
    """Cascades the replay cannot evaluate (same trained router: training is the slow part)."""
    cascade(manage, "third-model", [{"model": "test/gemini"}, {"model": DEAR}])
    cascade(manage, "chain", [{"model": CHEAP}, {"model": DEAR}], kind="series")
    cascade(manage, "ungated", [{"model": CHEAP}, {"model": DEAR}])

    not_a_candidate = manage.get("/api/v1/pipelines/third-model/report?router=support")
    assert not_a_candidate.status_code == 400
    assert "test/gemini is not one of" in not_a_candidate.json()["error"]["message"]
    assert manage.get("/api/v1/pipelines/chain/report?router=support").status_code == 409
    no_router = manage.get("/api/v1/pipelines/ungated/report")
    assert no_router.status_code == 400 and no_router.json()["error"]["param"] == "router"
    assert manage.get("/api/v1/pipelines/ungated/report?router=nope").status_code == 404

    version = RouterVersion.objects.get(router__slug="support")
    assert heldout_load(version) is not None
    default_storage.delete(heldout_path(version.artifact_prefix))
    missing = manage.get("/api/v1/pipelines/ungated/report?router=support")
    assert (
        missing.status_code == 409 and "train a new version" in missing.json()["error"]["message"]
    )
