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

from nd_sdk_select import configs_and_messages  # type: ignore[import-not-found]  # run as a script
from notdiamond import NotDiamond


def main(args: dict[str, Any]) -> list[list[str]]:
    configs, messages = configs_and_messages(args)
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
