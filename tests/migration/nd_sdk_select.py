"""Not Diamond's ``model_select`` (``notdiamond`` 0.4) with the options its users pass, pointed at
RouterHub by ``nd_api_url``. Reads ``{key, url, llm_providers, prompt, calls: [kwargs]}``; prints
one JSON list of ``[session_id, "<provider>/<model>"]``, one per call. A call's ``tools`` go to
the client's constructor, as the SDK takes them (``model_select`` reads the client's own)."""

from __future__ import annotations

import json
import sys
from typing import Any

from notdiamond import NotDiamond
from notdiamond.llms.config import LLMConfig


def configs_and_messages(args: dict[str, Any]) -> tuple[list[LLMConfig], list[dict[str, str]]]:
    """Custom ``LLMConfig``s for ``args["llm_providers"]`` and the one user message."""
    prices = {"context_length": 128000, "input_price": 1.0, "output_price": 2.0, "latency": 1.0}
    pairs = [name.split("/", 1) for name in args["llm_providers"]]
    configs = [LLMConfig(provider=p, model=m, is_custom=True, **prices) for p, m in pairs]
    return configs, [{"role": "user", "content": args["prompt"]}]


def main(args: dict[str, Any]) -> list[list[str]]:
    configs, messages = configs_and_messages(args)
    selections = []
    for options in args["calls"]:
        client = NotDiamond(llm_configs=configs, api_key=args["key"], nd_api_url=args["url"],
                            tools=options.pop("tools", None))  # fmt: skip
        session_id, provider = client.chat.completions.model_select(messages=messages, **options)
        selections.append([session_id, str(provider)])
    return selections


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.read()))))
