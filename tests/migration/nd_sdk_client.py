"""Not Diamond's own SDK (``notdiamond`` 0.4) used exactly as its users do, pointed at RouterHub
through ``NOTDIAMOND_API_URL``; run in a fresh interpreter because the SDK reads that setting when
it is imported. Prints one JSON object: the preference id, then each selection and feedback."""

from __future__ import annotations

import json
import sys

import pandas as pd
from notdiamond import NotDiamond
from notdiamond.llms.config import LLMConfig
from notdiamond.metrics.metric import Metric
from notdiamond.toolkit.custom_router import CustomRouter


def custom(name: str, input_price: float, output_price: float) -> LLMConfig:
    return LLMConfig(provider="test", model=name, is_custom=True, context_length=128000,
                     input_price=input_price, output_price=output_price, latency=1.0)  # fmt: skip


def main(args: dict[str, object]) -> dict[str, object]:
    weak, strong = custom("gpt", 1.0, 2.0), custom("claude", 3.0, 15.0)
    frame = pd.DataFrame(args["rows"])
    per_model = {
        config: frame[["question", f"{config}/score"]].rename(columns={f"{config}/score": "score"})
        .assign(answer=f"an answer by {config}")
        for config in (weak, strong)
    }  # fmt: skip
    preference_id = CustomRouter(api_key=str(args["key"])).fit(
        per_model, prompt_column="question", response_column="answer", score_column="score"
    )
    client = NotDiamond(llm_configs=[weak, strong], api_key=str(args["key"]))
    selections = []
    for prompt in args["prompts"]:  # type: ignore[attr-defined]
        session_id, provider = client.chat.completions.model_select(
            messages=[{"role": "user", "content": prompt}],
            preference_id=preference_id,
            tradeoff=args.get("tradeoff"),
        )
        recorded = Metric("accuracy").feedback(
            session_id=session_id, llm_config=provider, value=1,
            notdiamond_api_key=str(args["key"]),
        )  # fmt: skip
        selections.append({"session_id": session_id, "model": str(provider), "feedback": recorded})
    return {"preference_id": preference_id, "selections": selections}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.stdin.read()))))
