"""Preference (Chatbot Arena) datasets: parsed into per-prompt win rates, or refused clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from rest_framework.test import APIClient

from accounts.models import KeyScope
from tests.factories import key_client, key_make, organization_make
from tests.migration.arena import arena_battles, is_hard
from tests.training.conftest import csv_bytes, parquet_bytes
from tests.training.helpers import upload
from training.ingest import DatasetInvalidError, dataset_parse

STRONG, WEAK = "arena/strong", "arena/weak"


def messages_of(error: DatasetInvalidError) -> str:
    return " | ".join(e["message"] for e in error.errors)


def test_battles_become_win_rates_where_the_strong_model_leads_on_hard_prompts() -> None:
    frame = arena_battles(STRONG, WEAK)

    parsed = dataset_parse(csv_bytes(frame))

    assert sorted(parsed.models) == sorted([STRONG, WEAK])
    assert parsed.costs is None and parsed.binary == [False, False]
    assert np.all((parsed.scores >= 0) & (parsed.scores <= 1))
    np.testing.assert_allclose(parsed.scores.sum(axis=1), 1.0)  # two models: p and 1 - p
    strong = parsed.scores[:, parsed.models.index(STRONG)]
    hard = np.array([is_hard(p) for p in parsed.prompts])
    assert strong[hard].mean() > 0.75  # wins ~86% of decided hard battles
    assert 0.4 < strong[~hard].mean() < 0.65  # mostly ties on easy ones
    assert len(parsed.prompts) == frame["prompt"].nunique()
    assert "Preference data: 400 battle(s)" in parsed.warnings[0]


def test_parquet_and_jsonl_battles_parse_like_csv() -> None:
    frame = arena_battles(STRONG, WEAK, rows=120)
    jsonl = "\n".join(json.dumps(r) for r in frame.to_dict("records")).encode()

    from_csv = dataset_parse(csv_bytes(frame))
    for content in (parquet_bytes(frame), jsonl):
        parsed = dataset_parse(content)
        assert parsed.prompts == from_csv.prompts
        np.testing.assert_allclose(parsed.scores, from_csv.scores, atol=1e-9)


def test_a_winner_named_by_model_id_counts_like_model_a_or_model_b() -> None:
    frame = arena_battles(STRONG, WEAK, rows=120)
    by_name = frame.assign(
        winner=[
            r.model_a if r.winner == "model_a" else r.model_b if r.winner == "model_b" else r.winner
            for r in frame.itertuples()
        ]
    )

    np.testing.assert_allclose(
        dataset_parse(csv_bytes(by_name)).scores, dataset_parse(csv_bytes(frame)).scores
    )


def test_bad_winners_and_models_are_reported_by_row_and_column() -> None:
    frame = arena_battles(STRONG, WEAK, rows=60)
    frame.loc[2, "winner"] = "model_c"
    frame.loc[5, "model_b"] = frame.loc[5, "model_a"]
    frame.loc[7, "model_a"] = ""

    with pytest.raises(DatasetInvalidError) as caught:
        dataset_parse(csv_bytes(frame))

    errors = {(e["row"], e["column"]): e["message"] for e in caught.value.errors}
    assert (
        "winner 'model_c' is not one of model_a, model_b, tie, tie (bothbad)"
        in errors[(3, "winner")]
    )
    assert "a battle needs two models" in errors[(6, "model_b")]
    assert "model_a is empty" in errors[(8, "model_a")]


def test_a_battles_file_with_one_model_or_too_few_prompts_is_refused() -> None:
    few = arena_battles(STRONG, WEAK, rows=10)

    with pytest.raises(DatasetInvalidError) as caught:
        dataset_parse(csv_bytes(few))

    assert "training needs at least 25" in messages_of(caught.value)


def test_a_mixed_file_learns_from_battles_and_score_rows_together() -> None:
    battles = arena_battles(STRONG, WEAK, rows=200)
    third = "arena/third"
    scored = pd.DataFrame(
        {
            "prompt": [f"Translate sentence number {i} about the {w} into French."
                       for i, w in zip(range(60), ["river", "comet", "violin"] * 20, strict=True)],
            f"{STRONG}/score": [1] * 60,
            f"{WEAK}/score": [0] * 60,
            f"{third}/score": [1, 0] * 30,
        }
    )  # fmt: skip
    mixed = pd.concat([battles, scored], ignore_index=True)

    parsed = dataset_parse(csv_bytes(mixed))

    assert sorted(parsed.models) == sorted([STRONG, WEAK, third])
    assert len(parsed.prompts) == battles["prompt"].nunique() + 60
    assert "60 comparison(s)" not in parsed.warnings[0]  # 3 pairs per score row
    assert "180 comparison(s) from score rows" in parsed.warnings[0]
    translate = np.array([p.startswith("Translate") for p in parsed.prompts])
    column = {m: parsed.scores[translate, j].mean() for j, m in enumerate(parsed.models)}
    assert column[STRONG] > column[third] > column[WEAK]


def test_an_uploaded_battles_file_with_bad_winners_is_invalid_with_reasons(
    transactional_db: None, media: object, eager_celery: None
) -> None:
    client: APIClient = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    frame = arena_battles(STRONG, WEAK, rows=60).assign(winner="a")

    created = upload(client, csv_bytes(frame), filename="battles.csv")

    dataset = client.get(f"/api/v1/datasets/{created.json()['id']}").json()
    assert dataset["status"] == "invalid"
    assert dataset["errors"][0]["column"] == "winner" and dataset["errors"][0]["row"] == 1
    assert "Chatbot Arena" in dataset["errors"][0]["message"]


def test_rows_with_an_empty_prompt_are_dropped_with_a_warning() -> None:
    frame = arena_battles(STRONG, WEAK, rows=120)
    frame.loc[[3, 4, 5], "prompt"] = ""

    parsed = dataset_parse(csv_bytes(frame))

    assert parsed.warnings[0] == "Dropped 3 row(s) with an empty prompt."
    assert "" not in parsed.prompts


def _mixed(separator_decimal: str = ".") -> pd.DataFrame:
    """Battles plus score rows whose scores are fractions (``0,75`` in a European export)."""
    battles = arena_battles(STRONG, WEAK, rows=200)
    scored = pd.DataFrame(
        {
            "prompt": [f"Summarise report number {i} on the {w}." for i, w in
                       zip(range(40), ["harbour", "orchard", "glacier", "market"] * 10, strict=True)],
            f"{STRONG}/score": ["0.75", "0.5"] * 20,
            f"{WEAK}/score": ["0.25", "0.5"] * 20,
        }
    )  # fmt: skip
    for column in (f"{STRONG}/score", f"{WEAK}/score"):
        scored[column] = scored[column].str.replace(".", separator_decimal)
    return pd.concat([battles, scored], ignore_index=True)


def test_a_semicolon_battles_file_reads_decimal_commas_as_score_files_do() -> None:
    european = _mixed(",").to_csv(index=False, sep=";").encode()

    parsed = dataset_parse(european)

    expected = dataset_parse(csv_bytes(_mixed(".")))
    assert parsed.prompts == expected.prompts
    np.testing.assert_allclose(parsed.scores, expected.scores, atol=1e-9)
    assert "40 comparison(s) from score rows" in parsed.warnings[0]


def test_a_battles_file_is_read_by_its_task_and_subtask_columns() -> None:
    frame = arena_battles(STRONG, WEAK, rows=200)
    frame["category"] = np.where([is_hard(p) for p in frame["prompt"]], "hard", "easy")
    frame["area"] = [("algebra", "proofs", "geometry")[i % 3] for i in range(len(frame))]
    # A repeated prompt keeps its first row's task, as in a score file.
    first = {p: i for i, p in reversed(list(enumerate(frame["prompt"])))}

    parsed = dataset_parse(csv_bytes(frame), columns={"task": "category", "subtask": "area"})

    rows = [first[p] for p in parsed.prompts]
    assert parsed.task_parents == [frame["category"][i] for i in rows]
    assert parsed.tasks == [f"{frame['category'][i]}/{frame['area'][i]}" for i in rows]
    found = dataset_parse(csv_bytes(frame.rename(columns={"category": "eval_name"})))
    assert found.tasks == found.task_parents == parsed.task_parents  # found by its name


def test_a_battles_file_maps_score_columns_and_refuses_cost_columns_by_name() -> None:
    mixed = _mixed(".")
    renamed = mixed.rename(columns={f"{STRONG}/score": "s1", f"{WEAK}/score": "s2"})
    mapping = {"scores": {STRONG: "s1", WEAK: "s2"}}

    parsed = dataset_parse(csv_bytes(renamed), columns=mapping)

    np.testing.assert_allclose(parsed.scores, dataset_parse(csv_bytes(mixed)).scores, atol=1e-9)
    with pytest.raises(DatasetInvalidError) as caught:
        dataset_parse(csv_bytes(renamed), columns={**mapping, "costs": {STRONG: "s1"}})
    assert "columns.costs is not read in a battles file" in messages_of(caught.value)
    with pytest.raises(DatasetInvalidError) as caught:
        dataset_parse(csv_bytes(renamed), columns={"scores": {STRONG: "s1", WEAK: "missing"}})
    assert "Column 'missing' named in columns.scores is not in the file." in messages_of(
        caught.value
    )


def test_an_uploaded_battles_file_with_a_task_column_trains_a_router_sliced_by_task(
    transactional_db: None, media: object, eager_celery: None
) -> None:
    client: APIClient = key_client(key_make(organization_make(), scope=KeyScope.MANAGE))
    frame = arena_battles(STRONG, WEAK, rows=200)
    frame["kind"] = np.where([is_hard(p) for p in frame["prompt"]], "hard", "easy")

    created = upload(client, csv_bytes(frame), filename="battles.csv", columns={"task": "kind"})
    client.post("/api/v1/routers", {"slug": "arena"}, format="json")
    run = client.post("/api/v1/routers/arena/train", {"dataset": created.json()["id"]}, "json")

    assert run.status_code == 202, run.json()
    report = client.get("/api/v1/routers/arena/versions/1/report").json()
    assert report["slices"]["by"] == "task"
    assert {row["slice"] for row in report["slices"]["rows"]} == {"hard", "easy"}


def kaggle_55k(frame: pd.DataFrame) -> pd.DataFrame:
    """Kaggle's lmsys-arena-human-preference-55k layout: one-hot outcome, prompt as a JSON list."""
    return pd.DataFrame(
        {"id": range(len(frame)), "model_a": frame["model_a"], "model_b": frame["model_b"],
         "prompt": [json.dumps([p]) for p in frame["prompt"]],
         "response_a": '["An answer."]', "response_b": '["Another answer."]',
         "winner_model_a": (frame["winner"] == "model_a").astype(int),
         "winner_model_b": (frame["winner"] == "model_b").astype(int),
         "winner_tie": frame["winner"].str.startswith("tie").astype(int)}
    )  # fmt: skip


def arena_conversations(frame: pd.DataFrame) -> bytes:
    """lmsys/chatbot_arena_conversations as JSONL: no prompt column, the turns in conversations."""
    rows = [
        {"question_id": r["question_id"], "model_a": r["model_a"], "model_b": r["model_b"],
         "winner": r["winner"], "turn": 1, "language": "English",
         "conversation_a": [{"role": "user", "content": r["prompt"]},
                            {"role": "assistant", "content": "An answer."}],
         "conversation_b": [{"role": "user", "content": r["prompt"]},
                            {"role": "assistant", "content": "Another answer."}]}
        for r in frame.to_dict("records")
    ]  # fmt: skip
    return "\n".join(json.dumps(r) for r in rows).encode()


def test_the_55k_and_arena_conversations_layouts_parse_as_the_same_battles() -> None:
    frame = arena_battles(STRONG, WEAK, rows=160)
    frame.loc[0, "prompt"] = "Écris un poème sur la mer.\nDeux lignes."  # escaped in the JSON list

    as_battles = dataset_parse(csv_bytes(frame))
    # Both were refused: "No score columns" (55k) and "No prompt column" (conversations).
    for content in (csv_bytes(kaggle_55k(frame)), arena_conversations(frame)):
        parsed = dataset_parse(content)
        assert parsed.prompts == as_battles.prompts and parsed.models == as_battles.models
        np.testing.assert_allclose(parsed.scores, as_battles.scores, atol=1e-9)
    assert as_battles.prompts[0] == "Écris un poème sur la mer.\nDeux lignes."


def test_a_55k_turn_list_joins_its_turns_and_a_bad_one_hot_row_is_named() -> None:
    frame = kaggle_55k(arena_battles(STRONG, WEAK, rows=60))
    frame.loc[0, "prompt"] = json.dumps(["First turn.", "Second turn."])
    parsed = dataset_parse(csv_bytes(frame))
    frame.loc[3, ["winner_model_a", "winner_model_b"]] = [1, 1]

    with pytest.raises(DatasetInvalidError) as invalid:
        dataset_parse(csv_bytes(frame))

    assert "First turn.\nSecond turn." in parsed.prompts
    assert invalid.value.errors[0]["row"] == 4
    assert "exactly one 1 and two 0s (found 1, 1, 0)" in messages_of(invalid.value)
