"""What checking a stream's chunks costs, per chunk, side by side (part of ``make bench``):

    python -m bench.chunk_checks [--chunks 20000] [--rounds 5]

The gateway reads each upstream chunk through ``stream_checks.choices_fed`` (the decoder's
``feed`` under ``chunk_read``, then the shape check of its choices). Beside it: the decoder's
``feed`` alone (no ``chunk_read``, no shape check) and a plain ``json.loads`` /
``orjson.loads`` of the same bytes (the floor: a relay that parses and checks nothing). Chunks
are the fake upstream's own (``wire.openai_stream``): text deltas, a tool call's argument
deltas and Magistral's list-shaped ``content``. The best round of each, in µs of this process's
CPU time a chunk; numbers only, nothing asserted."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import orjson

from routing.fake_upstream import wire
from routing.fake_upstream.answers import Answer
from routing.providers.base import UpstreamRequest
from routing.providers.openai_compat import OpenAIStreamDecoder
from routing.providers.stream_checks import choices_fed

_PROMPT = "Tell me about owls and the forests they live in, in some detail."


def _chunk_data(model: str, answer: Answer) -> list[str]:
    turn = wire.openai_turn({"messages": [{"role": "user", "content": _PROMPT}]}, model)
    events = wire.openai_stream(turn, answer, 0, None, include_usage=True)
    return [e.decode().removeprefix("data: ").strip() for e in events]


def sample_chunks(count: int) -> dict[str, list[str]]:
    """``count`` chunks of each kind (a stream's events repeated)."""
    text = " ".join([_PROMPT] * 8)
    kinds = {
        "text": _chunk_data("gpt-4o-mini", Answer(text=text)),
        "tool_call": _chunk_data(
            "gpt-4o-mini", Answer(tool_name="get_weather", tool_arguments={"city": "Paris"})
        ),
        "magistral": _chunk_data("magistral-medium-latest", Answer(text=text)),
    }
    return {kind: (data * (count // len(data) + 1))[:count] for kind, data in kinds.items()}


def _per_chunk_us(run: Callable[[list[str]], Any], chunks: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()  # CPU time: other processes on the machine add none
        run(chunks)
        best = min(best, time.process_time() - started)
    return round(best / len(chunks) * 1e6, 3)


def _checked(chunks: list[str]) -> None:
    decoder = OpenAIStreamDecoder(UpstreamRequest(url="", headers={}, body={}))
    for data in chunks:
        choices_fed(decoder, None, data)


def _decoded(chunks: list[str]) -> None:
    decoder = OpenAIStreamDecoder(UpstreamRequest(url="", headers={}, body={}))
    for data in chunks:
        decoder.feed(None, data)


def _json_loads(chunks: list[str]) -> None:
    for data in chunks:
        if data != "[DONE]":
            json.loads(data)


def _orjson_loads(chunks: list[str]) -> None:
    for data in chunks:
        if data != "[DONE]":
            orjson.loads(data)


def run(chunks: int = 20000, rounds: int = 5) -> dict[str, Any]:
    """µs a chunk for each reading, per kind of chunk; ``checks_over_json_loads_us``: what
    ``choices_fed`` costs beyond a plain ``json.loads``."""
    results: dict[str, Any] = {"chunks": chunks, "rounds": rounds, "unit": "us per chunk"}
    for kind, data in sample_chunks(chunks).items():
        row = {
            "choices_fed": _per_chunk_us(_checked, data, rounds),
            "decoder_feed": _per_chunk_us(_decoded, data, rounds),
            "json_loads": _per_chunk_us(_json_loads, data, rounds),
            "orjson_loads": _per_chunk_us(_orjson_loads, data, rounds),
        }
        row["checks_over_json_loads_us"] = round(row["choices_fed"] - row["json_loads"], 3)
        results[kind] = row
    return results


def text(results: dict[str, Any]) -> str:
    lines = [
        f"stream chunk reading, µs a chunk (best of {results['rounds']} rounds of "
        f"{results['chunks']} chunks)",
        "| chunks | choices_fed (gateway) | decoder feed only | json.loads | orjson.loads |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in ("text", "tool_call", "magistral"):
        row = results[kind]
        lines.append(
            f"| {kind} | {row['choices_fed']} | {row['decoder_feed']} | {row['json_loads']} "
            f"| {row['orjson_loads']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(text(run(args.chunks, args.rounds)))


if __name__ == "__main__":
    main()
