"""Not Diamond's ``model_select`` and ``amodel_select`` (``notdiamond`` 0.4) with the client-level
options its users set: ``preference_id``, ``tradeoff`` and ``default`` on the constructor, the
async call, no preference id at all. Reads ``{key, url, llm_providers, prompt, calls}``, each call
``{"client": {...}, "select": {...}, "async": bool}``; prints one JSON list of
``[session_id, "<provider>/<model>"]``. The SDK answers an API error with its ``default`` model
and the session id ``NO-SESSION-ID``: the caller checks the session id."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from notdiamond import NotDiamond
from notdiamond.llms.config import LLMConfig


def main(args: dict[str, Any]) -> list[list[str]]:
    prices = {"context_length": 128000, "input_price": 1.0, "output_price": 2.0, "latency": 1.0}
    pairs = [name.split("/", 1) for name in args["llm_providers"]]
    configs = [LLMConfig(provider=p, model=m, is_custom=True, **prices) for p, m in pairs]
    messages = [{"role": "user", "content": args["prompt"]}]
    selections = []
    for call in args["calls"]:
        client = NotDiamond(llm_configs=configs, api_key=args["key"], nd_api_url=args["url"],
                            **call.get("client", {}))  # fmt: skip
        options = call.get("select", {})
        if call.get("async"):
            session_id, provider = asyncio.run(
                client.chat.completions.amodel_select(messages=messages, **options)
            )
        else:
            session_id, provider = client.chat.completions.model_select(
                messages=messages, **options
            )
        selections.append([session_id, str(provider)])
    return selections


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.read()))))
