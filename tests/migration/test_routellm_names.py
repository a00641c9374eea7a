"""RouteLLM's server as its users call it beyond the basics: its routers' own names as slugs
(``sw_ranking``, ``causal_llm``) and streamed answers."""

from __future__ import annotations

import openai
import pytest

from tests.migration.test_routellm import STRONG, WEAK, train_on_battles
from tests.routing.world import World

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def test_routellm_router_names_stream_through_the_openai_sdk(world: World) -> None:
    _, prompts = train_on_battles(world, slug="sw_ranking")
    client = openai.OpenAI(base_url=f"{world.gateway_url}/v1", api_key=world.key, max_retries=0)

    chunks = list(
        client.chat.completions.create(
            model="router-sw_ranking-0", messages=[{"role": "user", "content": prompts[0]}],
            max_tokens=8, stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    weak = client.chat.completions.create(
        model="router-sw_ranking-1.0", messages=[{"role": "user", "content": prompts[0]}],
        max_tokens=8,
    )  # fmt: skip

    assert {c.model for c in chunks} == {STRONG}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert weak.model == WEAK
