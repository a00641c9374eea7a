"""The prices Not Diamond's ``LLMConfig``s declare for ``CustomRouter.fit`` (``input_price``,
``output_price``, USD per million tokens): checked, then blended into the one price a model a
training run's ``options.prices`` holds."""

from __future__ import annotations

from typing import Any

from routerhub.errors import BadRequest
from training import serving


def declared_prices(items: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """The ``(input_price, output_price)`` (USD per million tokens) of each ``llm_providers``
    entry that declares them, checked before the upload is read: a price that is not a number
    from 0 to ``MAX_PRICE`` (negative, a string, NaN, a huge integer) is a 400 naming it."""
    prices: dict[str, tuple[float, float]] = {}
    for i, item in enumerate(items):
        sides = {k: item.get(k) for k in ("input_price", "output_price")}
        if all(v is None for v in sides.values()):
            continue
        checked = []
        for field, v in sides.items():
            price = serving.price_value(v)
            if price is None:
                raise BadRequest(
                    f"llm_providers[{i}].{field} must be a number from 0 to "
                    f"{serving.MAX_PRICE:g} (USD per million tokens); it was {str(v)[:40]}.",
                    param=f"llm_providers[{i}].{field}",
                )
            checked.append(price)
        prices[f"{item['provider']}/{item['model']}"] = (checked[0], checked[1])
    return prices


def blended(declared: dict[str, tuple[float, float]], prompts: list[str]) -> dict[str, float]:
    """One price a model for the run's token model (``estimated_tokens``: the prompt plus
    ``DEFAULT_OUTPUT_TOKENS`` of answer): ``(in·p̄ + out·256) / (p̄ + 256)``, p̄ the dataset's mean
    prompt tokens; a weighted mean, so never above the dearer side."""
    mean = sum(serving.text_tokens(p) for p in prompts) / max(len(prompts), 1)
    out = serving.DEFAULT_OUTPUT_TOKENS
    return {m: (i * mean + o * out) / (mean + out) for m, (i, o) in declared.items()}
