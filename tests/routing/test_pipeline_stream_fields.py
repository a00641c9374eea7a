"""A pipeline's answer streamed after its steps ran (``pipeline_stream``) carries the fields a
provider's own stream relays: DeepSeek's ``reasoning_content`` with the rest. Over HTTP through
the official ``openai`` SDK against the fake upstream (its ``*reasoner*`` model answers whole
with ``reasoning_content``)."""

from __future__ import annotations

from routing.fake_upstream.answers import answer_text
from tests.routing.world import World, base_catalog, endpoint, model

PROMPT = "Why is the sky blue?"


def test_a_whole_answer_streamed_keeps_every_answer_field(world: World) -> None:
    data = base_catalog(world.fake_url)
    data["models"].append(model("test/reasoner"))
    data["endpoints"].append(endpoint("test/reasoner", "fake-openai", "deepseek-reasoner"))
    world.catalog(data)
    steps = [{"model": "test/reasoner", "gate": {"type": "non_empty"}}]
    assert world.pipeline_create("reasoned", "cascade", steps).status_code == 201

    chunks = list(
        world.openai_client().chat.completions.create(
            model="pipeline/reasoned", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )

    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == answer_text("deepseek-reasoner", PROMPT)
    # Old code: the reasoning_content was dropped (a live stream relays it).
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == " ".join(["Step: weigh the question once more."] * 20)
