"""An organization may point its provider key at a host of its own, and that host may answer
anything: gigabytes, or a few kilobytes of gzip or zstd that decode to gigabytes, in the one
gateway process that serves every organization. Every answer is bounded once decoded
(``GATEWAY_MAX_RESPONSE_BYTES``, whole or streamed) and an encoding whose decoding has no bound
per read (zstd) is refused before any of it is read."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import zstandard

from routerhub.settings_parts import gateway as gateway_settings
from routing.gateway.upstream import body_chunks, body_prefix
from tests.routing.world import World, base_catalog, endpoint, model
from tests.security.own_host import COMPLETION, OwnHost, ask, own_host_serving, stream_chunk

LIMIT = 1024 * 1024
PADDING = 3 * LIMIT  # 3 MiB once decoded; ~3 KiB of gzip on the wire
STREAM = (
    stream_chunk({"role": "assistant", "content": "Hello there."}, None)
    + stream_chunk({}, "stop", COMPLETION["usage"])
    + b"data: [DONE]\n\n"
)


@pytest.fixture
def own_host(world: World, settings: Any) -> Iterator[OwnHost]:
    settings.GATEWAY_MAX_RESPONSE_BYTES = LIMIT
    app = OwnHost()
    with own_host_serving(world, settings, app):
        yield app


def attempt_errors(response: httpx.Response) -> list[str]:
    attempts = response.json()["error"]["metadata"]["attempts"]
    return [f"{a['error']}: {a.get('detail', '')}" for a in attempts]


def test_a_small_answer_from_an_own_host_is_served_gzipped_or_not(
    world: World, own_host: OwnHost
) -> None:
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(COMPLETION))
    assert ask(world, stream=False).json()["choices"][0]["message"]["content"] == "Hello there."

    gzipped = gzip.compress(orjson.dumps(COMPLETION))
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"}, gzipped)
    assert ask(world, stream=False).json()["choices"][0]["message"]["content"] == "Hello there."

    own_host.answer = ({"content-type": "text/event-stream", "content-encoding": "gzip"},
                       gzip.compress(STREAM))  # fmt: skip
    streamed = ask(world, stream=True)
    assert streamed.status_code == 200 and "Hello there." in streamed.text


def test_a_gzip_bomb_answer_is_refused_past_the_limit(world: World, own_host: OwnHost) -> None:
    # Valid JSON: a completion followed by 3 MiB of spaces. Before, it was decoded whole into
    # memory and served (200); the padding could as well have been gigabytes.
    bomb = gzip.compress(orjson.dumps(COMPLETION) + b" " * PADDING)
    assert len(bomb) < 16 * 1024
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"}, bomb)

    response = ask(world, stream=False)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [
        f"malformed_response: the answer is larger than {LIMIT} bytes"
    ]


def test_a_streamed_answer_is_refused_past_the_limit(world: World, own_host: OwnHost) -> None:
    # 3 MiB of SSE comments (which carry nothing) before the answer, gzipped to a few KiB.
    padding = b": keep-alive\n\n" * (PADDING // 14)
    own_host.answer = ({"content-type": "text/event-stream", "content-encoding": "gzip"},
                       gzip.compress(padding + STREAM))  # fmt: skip

    response = ask(world, stream=True)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [f"stream_error: the answer is larger than {LIMIT} bytes"]


def test_a_zstd_answer_is_refused_before_it_is_decoded(world: World, own_host: OwnHost) -> None:
    # One zstd frame of a few bytes can declare gigabytes: nothing of it is decoded.
    packed = zstandard.ZstdCompressor().compress(orjson.dumps(COMPLETION))
    own_host.answer = ({"content-type": "application/json", "content-encoding": "zstd"}, packed)

    response = ask(world, stream=False)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [
        "malformed_response: the answer's Content-Encoding 'zstd' is not one RouterHub decodes"
    ]


def test_the_gateway_asks_upstreams_only_for_encodings_it_decodes(
    world: World, own_host: OwnHost
) -> None:
    own_host.answer = ({"content-type": "application/json"}, orjson.dumps(COMPLETION))

    assert ask(world, stream=False).status_code == 200
    assert own_host.accept_encodings == [b"gzip, deflate"]


def test_stacked_gzip_is_refused_before_it_is_decoded(world: World, own_host: OwnHost) -> None:
    # ``gzip, gzip``: httpx decoded both layers inside one read, so a few hundred bytes became
    # hundreds of megabytes in memory before anything counted them (the set {"gzip"} passed).
    bomb = gzip.compress(gzip.compress(orjson.dumps(COMPLETION) + b" " * PADDING))
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip, gzip"},
                       bomb)  # fmt: skip

    response = ask(world, stream=False)

    assert response.status_code == 502, response.text
    assert attempt_errors(response) == [
        "malformed_response: the answer's Content-Encoding 'gzip, gzip' is not one RouterHub "
        "decodes"
    ]


def _answer(status: int, coding: str, body: bytes) -> httpx.Response:
    """An upstream answer whose whole body arrives in one read of the wire."""
    request = httpx.Request("POST", "http://own.example/v1/chat/completions")
    headers = {"content-encoding": coding}
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body), request=request)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_no_single_read_decodes_past_the_bound(coding: str) -> None:
    # A one-layer bomb read in one piece: httpx's decoder expanded the whole read (~3 MiB here,
    # ~256 MiB from the 256 KiB the transport reads at once) before its size was counted.
    plain = orjson.dumps(COMPLETION) + b" " * PADDING
    answer = _answer(
        200, coding, gzip.compress(plain) if coding == "gzip" else zlib.compress(plain)
    )

    async def sizes() -> list[int]:
        return [len(c) async for c in body_chunks(answer, limit=2 * PADDING)]

    decoded = asyncio.run(sizes())

    assert sum(decoded) == len(plain)
    assert max(decoded) <= 64 * 1024


def test_an_error_body_bomb_is_decoded_only_to_its_prefix() -> None:
    answer = _answer(500, "gzip", gzip.compress(b"x" * PADDING))

    tracemalloc.start()
    try:
        assert asyncio.run(body_prefix(answer, 100)) == b"x" * 100
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < PADDING // 4  # the old code decoded the whole 3 MiB read first


def test_the_largest_legitimate_embeddings_answer_fits_the_default_bound(
    world: World, own_host: OwnHost, settings: Any
) -> None:
    # /v1/embeddings allows 2,048 inputs; at 3,072 dimensions, pretty-printed JSON floats
    # (~23 bytes each) make ~140 MB. Scaled down 256 times — 8 inputs against the default bound
    # / 256 — the answer is served (the former 64 MiB default refused it: a 502), and a bomb of
    # three times the bound is still refused.
    settings.GATEWAY_MAX_RESPONSE_BYTES = gateway_settings.GATEWAY_MAX_RESPONSE_BYTES // 256
    data = base_catalog(world.fake_url)
    data["models"] += [model("test/own"), model("test/own-embed", ["embeddings"])]
    data["endpoints"] += [endpoint("test/own", "fake-openai", "gpt-4o-mini"),
                          endpoint("test/own-embed", "fake-openai", "text-embedding-3-large")]  # fmt: skip
    world.catalog(data)
    floats = ",\n".join(f"        {x:.10f}" for x in [0.0123456789, -0.0123456789] * 1536)
    items = ",\n".join(f'    {{"object": "embedding", "index": {i}, "embedding": [\n{floats}\n    ]}}'
                       for i in range(8))  # fmt: skip
    answer = ('{"object": "list", "model": "text-embedding-3-large", "data": [\n' + items
              + '\n], "usage": {"prompt_tokens": 8, "total_tokens": 8}}').encode()  # fmt: skip
    assert len(answer) > 64 * 1024 * 1024 // 256  # past the former default, scaled alike
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"},
                       gzip.compress(answer))  # fmt: skip
    body = {"model": "test/own-embed", "input": [f"text {i}" for i in range(8)]}
    auth = {"Authorization": f"Bearer {world.key}"}

    served = httpx.post(f"{world.gateway_url}/v1/embeddings", json=body, headers=auth, timeout=30)

    assert served.status_code == 200, served.text
    assert [len(d["embedding"]) for d in served.json()["data"]] == [3072] * 8

    padded = answer[:-1] + b" " * (3 * settings.GATEWAY_MAX_RESPONSE_BYTES) + b"}"
    own_host.answer = ({"content-type": "application/json", "content-encoding": "gzip"},
                       gzip.compress(padded))  # fmt: skip
    refused = httpx.post(f"{world.gateway_url}/v1/embeddings", json=body, headers=auth, timeout=30)
    assert refused.status_code == 502, refused.text
