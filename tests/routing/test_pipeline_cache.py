"""Pipeline rows are cached per process like router rows (``routing.pipeline_rows``): a warm
``pipeline/<slug>`` request reads no pipeline row from PostgreSQL, and a new version or a
deletion is served after it happens — by the next request of the process that committed it, and
within ``PIPELINE_CACHE_TTL`` by any other. Through the real gateway and the ``openai`` SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from accounts.models import KeyScope
from routing.models import Pipeline, PipelineVersion
from tests.factories import key_client
from tests.routing.servers import poll
from tests.routing.test_pipelines import URL
from tests.routing.world import World
from tests.statements import statements_everywhere

PIPELINE_TABLE = '"routing_pipeline'  # routing_pipeline and routing_pipelineversion, quoted


def ask(world: World, slug: str) -> Any:
    return world.openai_client().chat.completions.create(
        model=f"pipeline/{slug}", messages=[{"role": "user", "content": "Name a green tea"}]
    )


def served_version(world: World, slug: str) -> int:
    return int(ask(world, slug).model_extra["pipeline"]["version"])


def pipeline_reads(statements: list[str]) -> list[str]:
    return [sql for sql in statements if PIPELINE_TABLE in sql]


def test_a_warm_pipeline_request_reads_no_pipeline_row(world: World, settings: Any) -> None:
    settings.PIPELINE_CACHE_TTL = 60.0  # no reload falls due during the test
    assert world.pipeline_create("warm", "cascade", [{"model": "test/gpt"}]).status_code == 201

    with statements_everywhere() as cold:
        ask(world, "warm")
    with statements_everywhere() as warm:
        completion = ask(world, "warm")

    assert len(pipeline_reads(cold)) == 1  # the capture sees the gateway's worker threads
    assert pipeline_reads(warm) == []
    assert completion.model_extra["pipeline"]["version"] == 1


def test_a_new_version_is_served_by_the_next_request(world: World, settings: Any) -> None:
    settings.PIPELINE_CACHE_TTL = 60.0  # only the commit's own invalidation can explain it
    assert world.pipeline_create("evolving", "cascade", [{"model": "test/gpt"}]).status_code == 201
    assert served_version(world, "evolving") == 1
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))

    added = admin.post(
        f"{URL}/evolving/versions",
        {"kind": "cascade", "steps": [{"model": "test/claude"}]},
        format="json",
    )

    assert added.status_code == 201
    completion = ask(world, "evolving")
    assert completion.model_extra["pipeline"]["version"] == 2
    assert completion.model == "test/claude"


def test_a_change_committed_elsewhere_is_served_within_the_cache_ttl(
    world: World, settings: Any
) -> None:
    settings.PIPELINE_CACHE_TTL = 0.3
    assert world.pipeline_create("shared", "cascade", [{"model": "test/gpt"}]).status_code == 201
    assert served_version(world, "shared") == 1
    # What another process's commit looks like from here: rows change, this cache is not told.
    pipeline = Pipeline.objects.get(organization=world.organization, slug="shared")
    second = PipelineVersion.objects.create(
        pipeline=pipeline, number=2, kind="cascade", steps=[{"model": "test/claude"}]
    )
    Pipeline.objects.filter(pk=pipeline.pk).update(active_version=second)

    poll(lambda: served_version(world, "shared") == 2, timeout=10)


def test_a_deleted_pipeline_is_not_found_on_the_next_request(world: World, settings: Any) -> None:
    settings.PIPELINE_CACHE_TTL = 60.0
    assert world.pipeline_create("going", "cascade", [{"model": "test/gpt"}]).status_code == 201
    assert served_version(world, "going") == 1
    admin = key_client(world.key_for(scope=KeyScope.MANAGE))

    assert admin.delete(f"{URL}/going").status_code == 204

    with pytest.raises(openai.NotFoundError, match="pipeline/going"):
        ask(world, "going")
