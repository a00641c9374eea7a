"""Not Diamond's SDK (``notdiamond`` 0.4) sending the names and preference ids its users choose:
``create_preference_id(name)`` and ``CustomRouter.fit(preference_id=…)``, each call's outcome
printed (the preference id, or the SDK's error text) as one JSON list. Run in a fresh
interpreter, like nd_sdk_client.py."""

from __future__ import annotations

import json
import sys
from typing import Any

import pandas as pd
from notdiamond.llms.config import LLMConfig
from notdiamond.llms.request import create_preference_id
from notdiamond.toolkit.custom_router import CustomRouter


def fit(args: dict[str, Any], call: dict[str, Any]) -> str:
    frame = pd.DataFrame(call["rows"])
    per_model = {
        LLMConfig(provider="test", model=model, is_custom=True, context_length=128000,
                  input_price=1.0, output_price=2.0, latency=1.0):
        frame[["question", f"test/{model}/score"]]
        .rename(columns={f"test/{model}/score": "score"}).assign(answer="an answer")
        for model in ("gpt", "claude")
    }  # fmt: skip
    return CustomRouter(api_key=args["key"]).fit(
        per_model, prompt_column="question", response_column="answer", score_column="score",
        preference_id=call["fit"], nd_api_url=args["nd_url"],
    )  # fmt: skip


def outcome(args: dict[str, Any], call: dict[str, Any]) -> dict[str, str]:
    try:
        if "create" in call:
            made = create_preference_id(args["key"], call["create"], args["nd_url"])
            return {"preference_id": made}
        return {"preference_id": fit(args, call)}
    except Exception as exc:  # the SDK raises Exception/ApiError with the answer's text
        return {"error": str(exc)}


if __name__ == "__main__":
    arguments = json.loads(sys.stdin.read())
    print(json.dumps([outcome(arguments, call) for call in arguments["calls"]]))
