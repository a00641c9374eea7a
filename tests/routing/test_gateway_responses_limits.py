"""``/v1/responses`` refuses a key over its rate limit before it reads any stored response:
``previous_response_id`` and ``item_reference`` inputs cost a 429'd request no database look-up
(real gateway, ``openai`` SDK, statements counted in every thread)."""

from __future__ import annotations

import openai
import pytest

from tests.routing.world import World
from tests.statements import statements_everywhere

STORED_TABLE = '"routing_storedresponse"'


def test_a_rate_limited_request_reads_no_stored_response(world: World) -> None:
    limited = openai.OpenAI(
        base_url=f"{world.gateway_url}/v1", api_key=world.key_for(rpm=1), max_retries=0
    )
    first = limited.responses.create(model="test/gpt", input="My name is Ada.")
    message = first.output[0]

    with statements_everywhere() as seen, pytest.raises(openai.RateLimitError):
        limited.responses.create(
            model="test/gpt",
            previous_response_id=first.id,
            input=[
                {"type": "item_reference", "id": message.id},
                {"type": "item_reference", "id": "fc_searched"},
                {"role": "user", "content": "What is my name?"},
            ],
        )

    assert [sql for sql in seen if STORED_TABLE in sql] == []


def test_an_admitted_continuation_counts_its_stored_turns_as_prompt_tokens(world: World) -> None:
    """Admitted before its stored turns are read, a request is still charged their tokens:
    a tpm limit the stored turns exhaust refuses the next request."""
    limited = openai.OpenAI(
        base_url=f"{world.gateway_url}/v1", api_key=world.key_for(tpm=400), max_retries=0
    )
    first = limited.responses.create(model="test/gpt", input="x" * 600, store=True)
    # The first request's ~200 prompt tokens and its answer fit; the continuation repeats them.
    limited.responses.create(model="test/gpt", input="and?", previous_response_id=first.id)

    with pytest.raises(openai.RateLimitError):
        limited.responses.create(model="test/gpt", input="again?")
