"""Activating a version changes decisions in every worker, each re-reading the router on its own
(no restart, no message to it); rollback restores them. The re-read period (``ROUTER_CACHE_TTL``)
bounds how soon, by design; the test waits with the suite's poll, so a loaded machine is no
failure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings as django_settings

from tests.log_hygiene import subprocess_log
from tests.processes import database_url
from tests.routing.servers import closed_port_url, poll
from tests.routing.world import PLATFORM_KEYS, World
from tests.serving.test_router_serving import CHEAP, DEAR, MATH_PROMPT, train_router
from tests.training.conftest import csv_bytes, synthetic_frame
from tests.training.helpers import upload

pytestmark = pytest.mark.usefixtures("eager_celery", "media")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def second_worker(world: World) -> Iterator[str]:
    """Another gateway process on the same database and storage, as a second worker would be."""
    url = closed_port_url()
    port = url.rsplit(":", 1)[1]
    env = {
        **os.environ,
        **PLATFORM_KEYS,
        "ROUTERHUB_ENV": "test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": "",
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "ROUTERHUB_VAR_DIR": str(django_settings.VAR_DIR),
    }
    log = subprocess_log("second-gateway", Path(django_settings.VAR_DIR)).open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "routerhub.asgi:application",
            "--port",
            port,
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()  # the child holds its own descriptor
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("second gateway worker did not start")
    yield url
    process.terminate()
    process.wait(timeout=10)


def decision(base_url: str, key: str) -> tuple[int, str]:
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "router/support",
            "messages": [{"role": "user", "content": MATH_PROMPT}],
            "router": {"tradeoff": 0},
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    routing = response.json()["routing"]
    return routing["version"], routing["chosen"]


def reaches_every_worker(expected: tuple[int, str], urls: list[str], key: str) -> None:
    """Poll (``tests.routing.servers.poll``, its SETTLE_TIMEOUT bound) until every worker decides
    ``expected``; a worker that has switched must not switch back."""
    pending = set(urls)

    def switched() -> bool:
        for url in set(urls) - pending:
            assert decision(url, key) == expected, f"{url} went back after switching"
        pending.difference_update({url for url in pending if decision(url, key) == expected})
        return not pending

    poll(switched, interval=0.05)


def test_activation_and_rollback_reach_every_worker(
    world: World, second_worker: str, fast_router_reload: None
) -> None:
    manage, _ = train_router(world)
    # Version 2 learns the opposite: DEAR is the one that is right on arithmetic.
    swapped = synthetic_frame(rows=180, seed=1).rename(
        columns=lambda c: c.replace("math-model", DEAR).replace("prose-model", CHEAP)
    )
    dataset = upload(manage, csv_bytes(swapped), filename="swapped.csv").json()
    run = manage.post(
        "/api/v1/routers/support/train", {"dataset": dataset["id"]}, format="json"
    ).json()
    assert manage.get(f"/api/v1/training-runs/{run['id']}").json()["status"] == "succeeded"
    workers = [world.gateway_url, second_worker]
    assert [decision(url, world.key) for url in workers] == [(1, CHEAP), (1, CHEAP)]

    manage.post("/api/v1/routers/support/versions/2/activate")
    reaches_every_worker((2, DEAR), workers, world.key)

    manage.post("/api/v1/routers/support/versions/1/activate")
    reaches_every_worker((1, CHEAP), workers, world.key)
