"""Client fixtures: the in-process RouterHub server (gateway world, eager training) and
``routerhub_client`` clients pointed at it with a management and an inference key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from routerhub_client import RouterHub

from accounts.models import KeyScope
from tests.routing.world import World
from tests.serving.conftest import (
    _fresh_gateway_state,
    _fresh_router_caches,
    eager_celery,
    fake_server,
    gateway_server,
    media,
    world,
)
from tests.training.conftest import synthetic_frame

__all__ = [
    "_fresh_gateway_state",
    "_fresh_router_caches",
    "eager_celery",
    "fake_server",
    "gateway_server",
    "media",
    "world",
]

CHEAP, DEAR = "test/gpt", "test/claude"  # $1/$2 and $3/$15 per 1M tokens in the test catalog
MATH_PROMPT = "Compute 17 + 42 * 3."
PROSE_PROMPT = "Write a short poem about the lantern at dawn. (#1000)"


def support_frame(rows: int = 180, seed: int = 0) -> pd.DataFrame:
    """The synthetic score dataset with CHEAP right on arithmetic and DEAR on writing."""
    return synthetic_frame(rows=rows, seed=seed).rename(
        columns=lambda c: c.replace("math-model", CHEAP).replace("prose-model", DEAR)
    )


@pytest.fixture
def manage(world: World, eager_celery: None, media: Any) -> Iterator[RouterHub]:
    client = RouterHub(
        base_url=world.gateway_url, api_key=world.key_for(scope=KeyScope.MANAGE), max_retries=0
    )
    yield client
    client.close()


@pytest.fixture
def inference(world: World) -> Iterator[RouterHub]:
    client = RouterHub(base_url=world.gateway_url, api_key=world.key, max_retries=0)
    yield client
    client.close()
