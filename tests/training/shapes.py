"""Generated upload shapes nobody tuned the learner for: score scales, broken cells, odd prompts,
odd costs, odd task columns, CSV and JSONL spellings of the same data.

Each shape is a file plus what an upload of it should come to: ``"ready"`` (it trains and serves a
router at least as good as its best single model) or ``"invalid"`` (refused with errors naming a
row or column and what to do). ``tests/training/test_shapes_probe.py`` runs all of them through
upload → validation → training → report → dashboard → select; the regression tests reuse the
generator for the shapes that broke.
"""

from __future__ import annotations

import codecs
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

FAMILIES = {
    "math": ["Compute {a} + {b} * {c}.", "Solve for x: {a}x = {b}.", "What is {a} squared?"],
    "prose": ["Write a short poem about the {w}.", "Describe the {w} gently.", "Tell of a {w}."],
    "code": ["def f{a}(x):\n    return x * {b}", "for i in range({a}):\n    print(i + {b})"],
}
WORDS = ["river", "forest", "lantern", "harbour", "meadow", "violin", "garden", "comet"]
SCRIPTS = ["计算 {a} 加 {b} 等于多少？", "اكتب قصيدة عن {w} رقم {a}", "🙂🚀 {w} {a} ✨🔥"]


def latent(rows: int, models: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    """(prompts, families, P(correct) per row and model): model j is best on family j mod 3."""
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    prompts, families = [], []
    quality = np.empty((rows, models))
    for i in range(rows):
        family = names[i % len(names)]
        template = FAMILIES[family][(i // len(names)) % len(FAMILIES[family])]
        text = template.format(a=rng.integers(2, 99), b=rng.integers(2, 99), c=rng.integers(2, 9),
                               w=WORDS[i % len(WORDS)])  # fmt: skip
        prompts.append(f"{text} (#{i})")
        families.append(family)
        for j in range(models):
            quality[i, j] = 0.9 if j % len(names) == names.index(family) else 0.35 + 0.02 * (j % 5)
    return prompts, families, quality


def base_frame(rows: int = 150, models: int = 3, seed: int = 0, costs: bool = True) -> pd.DataFrame:
    """Binary scores drawn from ``latent``; costs rising with the model index."""
    prompts, families, quality = latent(rows, models, seed)
    rng = np.random.default_rng(seed + 1)
    data: dict[str, Any] = {"prompt": prompts, "family": families}
    draws = (rng.random(quality.shape) < quality).astype(int)
    for j in range(models):
        data[f"m{j}/score"] = draws[:, j]
        if costs:
            data[f"m{j}/cost"] = 0.001 * (j + 1)
    return pd.DataFrame(data)


@dataclass
class Shape:
    name: str
    content: bytes
    expect: str  # "ready" or "invalid"
    filename: str = "evals.csv"
    columns: dict[str, Any] | None = None
    maximize: bool = True
    says: list[str] = field(default_factory=list)  # words an invalid upload's errors must hold
    floor_noise: float = 0.02  # tradeoff 0 may trail the best single model by this times the scale


def csv_of(frame: pd.DataFrame) -> bytes:
    return frame.drop(columns=["family"], errors="ignore").to_csv(index=False).encode()


def jsonl_of(frame: pd.DataFrame) -> bytes:
    records = frame.drop(columns=["family"], errors="ignore").to_dict(orient="records")
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()


def score_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if str(c).endswith("/score")]


def rescaled(frame: pd.DataFrame, low: float, high: float, seed: int = 0) -> pd.DataFrame:
    """Scores on another scale: the binary draw mapped onto [low, high] plus a little noise."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column in score_columns(out):
        value = out[column].to_numpy(float) * 0.8 + rng.random(len(out)) * 0.2
        out[column] = np.round(low + (high - low) * value, 3)
    return out


def _messy_cells(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy().astype(dict.fromkeys(score_columns(frame), object))
    words = {0: ["False", "no", "0", "0.0"], 1: ["True", "yes", "1", "1.0"]}
    for i in range(len(out)):
        for k, column in enumerate(score_columns(out)):
            value = int(out.at[i, column])
            out.at[i, column] = words[value][(i + k) % 4]
    out.at[3, "m0/score"] = ""
    out.at[5, "m1/score"] = ""
    return out


def _with_cell(frame: pd.DataFrame, row: int, column: str, value: Any) -> pd.DataFrame:
    out = frame.copy().astype({column: object})
    out.at[row, column] = value
    return out


def _tasks(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    out = frame.copy()
    out.insert(1, "task", labels)
    return out


def _models(rows: int, models: int) -> pd.DataFrame:
    return base_frame(rows=rows, models=models, costs=False)


def _chat(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prompt"] = [
        json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": p}])
        for p in out["prompt"]
    ]
    return out.rename(columns={"prompt": "messages"})


def _identical(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.insert(3, "twin/score", out["m0/score"])
    out["twin/cost"] = out["m0/cost"]
    return out


def _scripts(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prompt"] = [
        SCRIPTS[i % 3].format(a=i, w=WORDS[i % len(WORDS)]) if out.at[i, "family"] == "prose" else p
        for i, p in enumerate(out["prompt"])
    ]
    return out


def _costs(frame: pd.DataFrame, values: list[float]) -> pd.DataFrame:
    out = frame.copy()
    for j, value in enumerate(values):
        out[f"m{j}/cost"] = value
    return out


def _duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    clash = frame.iloc[:20].copy()
    for column in score_columns(clash):
        clash[column] = 1 - clash[column]
    return pd.concat([frame, clash], ignore_index=True)


def _code_only(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prompt"] = [f"x_{i} = [{i}, {i * 7 % 13}]\nprint(sum(x_{i}))" if f != "code" else p
                     for i, (p, f) in enumerate(zip(out["prompt"], out["family"], strict=True))]  # fmt: skip
    return out


def shapes() -> list[Shape]:
    """Every shape the probe runs, in a stable order."""
    base = base_frame()
    costless = base_frame(costs=False)
    text = csv_of(base).decode()
    out: list[Shape] = [
        Shape("binary 0/1 (control)", csv_of(base), "ready"),
        Shape("binary 0/1 as JSONL", jsonl_of(base), "ready", "evals.jsonl"),
        Shape("ratings 0-10", csv_of(rescaled(base, 0, 10)), "ready"),
        Shape("ratings 0-10 as JSONL", jsonl_of(rescaled(base, 0, 10)), "ready", "evals.jsonl"),
        Shape("percentages 0-100", csv_of(rescaled(base, 0, 100)), "ready"),
        Shape(
            "losses (lower is better)", csv_of(rescaled(base, -0.1, -5)), "ready", maximize=False
        ),
        Shape(
            "losses with empty cells",
            csv_of(_with_cell(rescaled(base, -0.1, -5), 3, "m0/score", "")),
            "ready",
            maximize=False,
        ),
        Shape(
            "losses without costs", csv_of(rescaled(costless, -0.1, -5)), "ready", maximize=False
        ),
        Shape("negative scores, higher better", csv_of(rescaled(base, -5, -0.1)), "ready"),
        Shape("True/yes/no/0.0 and empty cells", csv_of(_messy_cells(base)), "ready"),
        Shape(
            "'N/A' cell",
            csv_of(_with_cell(base, 7, "m1/score", "N/A")),
            "invalid",
            says=["Row 8", "m1/score", "empty"],
        ),
        Shape(
            "'NaN' cell",
            csv_of(_with_cell(base, 7, "m1/score", "NaN")),
            "invalid",
            says=["Row 8", "m1/score"],
        ),
        Shape(
            "NaN cell in JSONL",
            jsonl_of(_with_cell(base, 7, "m1/score", float("nan"))),
            "ready",
            "evals.jsonl",
        ),
        Shape("constant model column", csv_of(base.assign(**{"m2/score": 1})), "ready"),
        Shape("constant zero model column", csv_of(base.assign(**{"m2/score": 0})), "ready"),
        Shape(
            "all-empty model column",
            csv_of(base.assign(**{"m2/score": ""})),
            "invalid",
            says=["m2/score", "no scores"],
        ),
        Shape("duplicated prompts, conflicting scores", csv_of(_duplicates(base)), "ready"),
        Shape(
            "one row per task",
            csv_of(_tasks(base, [f"t{i}" for i in range(150)])),
            "ready",
            columns={"task": "task"},
        ),
        Shape("a single task", csv_of(_tasks(base, ["only"] * 150)), "ready"),
        Shape(
            "300 tasks",
            csv_of(_tasks(base_frame(rows=600), [f"t{i % 300}" for i in range(600)])),
            "ready",
        ),
        Shape("tasks = the families", csv_of(_tasks(base, list(base["family"]))), "ready"),
        Shape("2 models", csv_of(_models(150, 2)), "ready"),
        Shape("60 models", csv_of(_models(150, 60)), "ready"),
        Shape("10 rows", csv_of(base.iloc[:10]), "invalid", says=["10", "25"]),
        Shape(
            "a 200k-character prompt",
            csv_of(_with_cell(base, 4, "prompt", "x" * 200_000)),
            "invalid",
            says=["Row 5", "prompt", "200,000"],
        ),
        Shape(
            "empty prompts",
            csv_of(_with_cell(_with_cell(base, 2, "prompt", ""), 9, "prompt", "   ")),
            "ready",
        ),
        Shape(
            "non-UTF-8 bytes",
            csv_of(base).replace(b"poem", b"po\xe9m", 1),
            "invalid",
            says=["UTF-8", "line"],
        ),
        Shape("BOM", codecs.BOM_UTF8 + csv_of(base), "ready"),
        Shape("CRLF", text.replace("\n", "\r\n").encode(), "ready"),
        Shape(
            "quoted newlines", csv_of(base.assign(prompt=base["prompt"] + "\nsecond line")), "ready"
        ),
        Shape("Chinese, Arabic, emoji", csv_of(_scripts(base)), "ready"),
        Shape("code-only prompts", csv_of(_code_only(base)), "ready"),
        Shape("chat-format prompts", csv_of(_chat(base)), "ready"),
        Shape("chat-format prompts as JSONL", jsonl_of(_chat(base)), "ready", "evals.jsonl"),
        Shape("costs of 0", csv_of(_costs(base, [0, 0, 0])), "ready"),
        Shape("a cost of 0 beside real costs", csv_of(_costs(base, [0, 0.002, 0.01])), "ready"),
        Shape(
            "costs for some models only",
            csv_of(base.drop(columns=["m2/cost"])),
            "invalid",
            says=["m2", "cost"],
        ),
        Shape("skewed costs 1e-9 vs 1e3", csv_of(_costs(base, [1e-9, 1e3, 1e-9])), "ready"),
        Shape("identical models", csv_of(_identical(base)), "ready"),
        Shape("no costs", csv_of(costless), "ready"),
    ]
    return out


def _json_bools(frame: pd.DataFrame) -> bytes:
    out = frame.copy().astype(dict.fromkeys(score_columns(frame), object))
    for column in score_columns(out):
        out[column] = [bool(v) for v in out[column]]
    return jsonl_of(out)


def parquet_of(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.drop(columns=["family"], errors="ignore").to_parquet(buffer, index=False)
    return buffer.getvalue()


def _content_parts(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prompt"] = [
        json.dumps([{"role": "user", "content": [{"type": "text", "text": p}]}])
        for p in out["prompt"]
    ]
    return out.rename(columns={"prompt": "messages"})


def more_shapes() -> list[Shape]:
    """The second batch: JSON booleans, Parquet, extreme magnitudes, few distinct prompts, odd
    task columns, non-Latin model ids, the minimum row count."""
    base = base_frame()
    few = pd.concat([base.iloc[:30]] * 5, ignore_index=True)
    unicode_ids = base.rename(columns={"m0/score": "模型/score", "m0/cost": "模型/cost"})
    gaps = base.assign(task=["" if i % 4 == 0 else f for i, f in enumerate(base["family"])])
    numeric_tasks = _tasks(base, [str(i % 5) for i in range(150)])
    return [
        Shape("JSON booleans", _json_bools(base), "ready", "evals.jsonl"),
        Shape("Parquet", parquet_of(base), "ready", "evals.parquet"),
        Shape("scores near 1e300", csv_of(rescaled(base, 0, 1e300)), "invalid",
              says=["Row 1", "m0/score", "rescale"]),
        Shape("costs near 1e300", csv_of(_costs(base, [1e300, 5e299, 1e-300])), "invalid",
              says=["Row 1", "m0/cost", "rescale"]),
        Shape("scores up to 1e12", csv_of(rescaled(base, 0, 1e12)), "ready"),
        Shape("scores near 1e-300", csv_of(rescaled(base, 0, 1e-300)), "ready"),
        Shape("30 distinct prompts of 150", csv_of(few), "ready"),
        Shape("task column with empty cells", csv_of(gaps.drop(columns=["family"])), "ready",
              columns={"task": "task"}),
        Shape("numeric task labels", csv_of(numeric_tasks), "ready", columns={"task": "task"}),
        Shape("non-Latin model id", csv_of(unicode_ids), "ready"),
        Shape("25 rows (the minimum)", csv_of(base.iloc[:25]), "ready"),
        # The best of 60 means over 25 rows is lucky (standard error ~0.09 each): the floor is
        # checked within 2 standard errors.
        Shape("25 rows, 60 models", csv_of(_models(25, 60)), "ready", floor_noise=0.2),
        Shape("content-part messages", jsonl_of(_content_parts(base)), "ready", "evals.jsonl"),
        Shape("all models identical", csv_of(base.assign(**{"m1/score": base["m0/score"],
                                                           "m2/score": base["m0/score"]})), "ready"),
        Shape("all scores equal", csv_of(base.assign(**dict.fromkeys(score_columns(base), 1))),
              "ready"),
        Shape("tab-separated", base.drop(columns=["family"]).to_csv(index=False, sep="\t").encode(),
              "ready", "evals.tsv"),
        Shape("semicolon-separated", base.drop(columns=["family"]).to_csv(index=False, sep=";").encode(),
              "ready"),
        Shape("one row per task, found by name", csv_of(_tasks(base, [f"t{i}" for i in range(150)])),
              "ready"),
        Shape("Chinese task/subtask labels", csv_of(_tasks(base, [f"数学/{f}" for f in base["family"]])),
              "ready"),
        Shape("JSONL lines missing a model", _jsonl_missing(base), "ready", "evals.jsonl"),
    ]  # fmt: skip


def _jsonl_missing(frame: pd.DataFrame) -> bytes:
    records = frame.drop(columns=["family"]).to_dict(orient="records")
    for i, record in enumerate(records):
        if i % 7 == 0:
            record.pop("m1/score")
    return "\n".join(json.dumps(r) for r in records).encode()


SHAPE_NAMES = [shape.name for shape in [*shapes(), *more_shapes()]]


def shape_named(name: str) -> Shape:
    return next(shape for shape in [*shapes(), *more_shapes()] if shape.name == name)
