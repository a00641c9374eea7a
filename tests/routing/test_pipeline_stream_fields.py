"""A pipeline's answer streamed after its steps ran (``pipeline_stream``) carries the fields a
provider's own stream relays: DeepSeek's ``reasoning_content`` with the rest."""

from __future__ import annotations

from routing.gateway.pipeline_stream import _as_delta


def test_a_whole_answer_as_a_chunk_keeps_every_answer_field() -> None:
    message = {"role": "assistant", "content": "Blue.", "reasoning_content": "Rayleigh.",
               "refusal": None}  # fmt: skip

    delta = _as_delta({"index": 0, "message": message, "finish_reason": "stop"})["delta"]

    # Old code: the reasoning_content was dropped (a live stream relays it).
    assert delta == {"role": "assistant", "content": "Blue.", "reasoning_content": "Rayleigh."}
