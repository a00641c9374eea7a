"""Not Diamond's ``create``, ``acreate`` and ``stream`` (``notdiamond`` 0.4) as its users write them,
with the LLM calls sent to RouterHub too: each ``LLMConfig`` carries a RouterHub key and
``base_url``, so langchain's ``ChatOpenAI`` calls ``/v1/chat/completions`` with the provider's
own model name (``gpt-4o``). Run in a fresh interpreter; prints one JSON object."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from notdiamond import NotDiamond
from notdiamond.llms.config import LLMConfig


def main(args: dict[str, Any]) -> dict[str, Any]:
    configs = [
        LLMConfig(provider="openai", model=name, api_key=args["key"], base_url=args["base_url"])
        for name in ("gpt-4o", "gpt-4o-mini")
    ]
    # latency_tracking=False: RouterHub takes no latency reports (it measures endpoints itself),
    # and the SDK's token counting would try to download tiktoken's tables.
    client = NotDiamond(llm_configs=configs, api_key=args["key"], nd_api_url=args["nd_url"],
                        latency_tracking=False)  # fmt: skip
    messages = [{"role": "user", "content": "Say hello."}]
    result, session_id, provider = client.chat.completions.create(
        messages=messages, tradeoff="cost", max_model_depth=2, hash_content=True
    )
    later, _, _ = asyncio.run(client.chat.completions.acreate(messages=messages))
    chunks = [c.content for c in client.chat.completions.stream(messages=messages)]
    return {"text": result.content, "session_id": session_id, "model": str(provider),
            "async_text": later.content, "stream_text": "".join(chunks)}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.read()))))
