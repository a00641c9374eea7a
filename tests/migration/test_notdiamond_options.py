"""Not Diamond's SDK options beyond the basic ``model_select``: async selection, options set on
the client, the latency tradeoff, ``default``, no preference id."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from accounts.models import KeyScope
from routing.models import SelectionSession
from tests.factories import key_client, key_make
from tests.migration.test_notdiamond import PROMPTS, STRONG, WEAK, trained_router
from tests.routing.world import World
from training.models import Dataset, TrainingRun
from training.tokens import text_tokens

pytestmark = pytest.mark.usefixtures("eager_celery", "media")


def sdk_select(world: World, calls: list[dict[str, Any]], prompt: str = PROMPTS[0]) -> list[Any]:
    args = {"key": world.key, "url": f"{world.gateway_url}/api/notdiamond", "prompt": prompt,
            "llm_providers": ["test/gpt", "test/claude"], "calls": calls}  # fmt: skip
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("nd_sdk_options.py"))],
                          input=json.dumps(args), capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_sdks_async_latency_default_and_client_options_select_through_routerhub(
    world: World,
) -> None:
    slug = trained_router(world)
    calls = [
        {"select": {"preference_id": slug}, "async": True},
        {"client": {"preference_id": slug, "tradeoff": "latency"}},
        {"select": {"preference_id": slug, "tradeoff": "latency"}, "async": True},
        {
            "client": {"default": "test/claude", "max_model_depth": 2},
            "select": {"preference_id": slug},
        },
        {"select": {}},
        {"select": {"default": 1}},
    ]

    selections = sdk_select(world, calls)

    for session_id, model in selections:
        assert session_id != "NO-SESSION-ID"
        assert SelectionSession.objects.get(id=session_id).chosen == model


def _config(model: str, input_price: float, output_price: float) -> dict[str, Any]:
    """What ``LLMConfig(provider="acme", model=…, is_custom=True, …).prepare_for_request()``
    sends: a self-hosted model outside the catalog, with the prices its owner declares."""
    return {"provider": "acme", "model": model, "is_custom": True, "context_length": 128000,
            "input_price": input_price, "output_price": output_price, "latency": 1.0}  # fmt: skip


def test_custom_router_fit_trains_with_the_prices_its_llm_configs_declare(world: World) -> None:
    from tests.migration.test_notdiamond import SELECT, nd_rows

    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    # acme/big scores as test/claude (right on prose), acme/tiny as test/gpt (right on math); the
    # better model is the cheaper one here, the opposite of the rank stand-in costs.
    rows = [{"question": r["question"], "acme/big/score": r[f"{STRONG}/score"],
             "acme/tiny/score": r[f"{WEAK}/score"]} for r in nd_rows()]  # fmt: skip
    upload = io.BytesIO(pd.DataFrame(rows).to_csv(index=False).encode())
    upload.name = "joint.csv"
    providers = [_config("big", 0.25, 0.5), _config("tiny", 20.0, 80.0)]
    form = {"dataset_file": upload, "llm_providers": json.dumps(providers), "language": "english",
            "prompt_column": "question", "maximize": "True", "preference_id": "acme"}  # fmt: skip

    trained = manage.post("/api/notdiamond/v2/pzn/trainCustomRouter", form)
    native = manage.post("/api/v1/routers/acme/select", {"prompt": PROMPTS[1], "tradeoff": 1},
                         format="json").json()  # fmt: skip
    selected = key_client(world.key).post(
        SELECT, {"messages": [{"role": "user", "content": PROMPTS[1]}], "tradeoff": "cost",
                 "llm_providers": providers, "preference_id": "acme"}, format="json",
    ).json()  # fmt: skip

    assert trained.status_code == 200, trained.content
    run = TrainingRun.objects.get(id=trained.json()["training_run"])
    # Each side weighed as estimated_tokens counts it: the mean prompt, then 256 answer tokens.
    mean = sum(text_tokens(r["question"]) for r in rows) / len(rows)
    assert run.options["prices"] == pytest.approx(
        {
            m: (i * mean + o * 256) / (mean + 256)
            for m, i, o in (("acme/big", 0.25, 0.5), ("acme/tiny", 20.0, 80.0))
        }
    )
    # The declared prices were dropped: rank stand-ins made the better model (big) the dearer
    # one, so the cost tradeoff sent the prose prompt to tiny.
    costs = {r["model"]: r["expected_cost"] for r in native["ranked"]}
    assert costs["acme/big"] < costs["acme/tiny"]
    assert native["chosen"] == "acme/big"
    assert selected["providers"] == [{"provider": "acme", "model": "big"}]


def test_custom_router_fit_without_prices_for_every_model_trains_as_before(world: World) -> None:
    from tests.migration.test_notdiamond import nd_rows

    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    upload = io.BytesIO(pd.DataFrame(nd_rows()).to_csv(index=False).encode())
    upload.name = "joint.csv"
    providers = [{"provider": "test", "model": "gpt", "input_price": None},
                 {"provider": "test", "model": "claude", "input_price": 3.0, "output_price": 15.0}]  # fmt: skip
    form = {"dataset_file": upload, "llm_providers": json.dumps(providers),
            "prompt_column": "question"}  # fmt: skip

    trained = manage.post("/api/notdiamond/v2/pzn/trainCustomRouter", form)

    assert trained.status_code == 200, trained.content
    assert "prices" not in TrainingRun.objects.get(id=trained.json()["training_run"]).options
    # Only claude declared prices: the answer says which models had none (rank costs were used).
    assert trained.json()["prices_missing"] == ["test/gpt"]


@pytest.mark.parametrize(
    ("field", "price"),
    [
        ("input_price", 10**400),
        ("output_price", 1e308),
        ("input_price", -1),
        ("output_price", "3"),
        ("input_price", float("nan")),
    ],
    ids=["huge-integer", "1e308", "negative", "string", "nan"],
)
def test_custom_router_fit_refuses_a_bad_declared_price_before_storing_anything(
    world: World, field: str, price: Any
) -> None:
    from tests.migration.test_notdiamond import nd_rows

    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    upload = io.BytesIO(pd.DataFrame(nd_rows()).to_csv(index=False).encode())
    upload.name = "joint.csv"
    providers = [{"provider": "test", "model": "gpt", "input_price": 1.0, "output_price": 2.0},
                 {"provider": "test", "model": "claude", "input_price": 3.0, "output_price": 15.0,
                  field: price}]  # fmt: skip
    form = {"dataset_file": upload, "llm_providers": json.dumps(providers),
            "prompt_column": "question"}  # fmt: skip

    refused = manage.post("/api/notdiamond/v2/pzn/trainCustomRouter", form)

    # A huge integer was a 500 (float overflow) after the dataset was stored; 1e308 twice summed
    # to inf, a 400 naming options.prices; -1, "3" and NaN were dropped for rank costs.
    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["param"] == f"llm_providers[1].{field}"
    assert not Dataset.objects.filter(organization=world.organization).exists()


def test_custom_models_without_a_preference_id_are_refused_naming_llm_providers(
    world: World,
) -> None:
    from tests.migration.test_notdiamond import SELECT

    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "metric": "accuracy",
            "llm_providers": [_config("big", 0.25, 0.5), _config("tiny", 20.0, 80.0)],
            "max_model_depth": 1, "hash_content": False}  # fmt: skip

    refused = key_client(world.key).post(SELECT, body, format="json")

    # router/auto ranks catalog models only; the 404 named `model`, a field this API never sends.
    error = refused.json()["error"]
    assert refused.status_code == 404 and error["param"] == "llm_providers"
    assert "acme/big, acme/tiny" in error["message"] and "CustomRouter.fit" in error["message"]


def test_selecting_with_a_router_still_training_names_preference_id(world: World) -> None:
    from tests.migration.test_notdiamond import PROVIDERS, SELECT

    manage = key_client(key_make(world.organization, scope=KeyScope.MANAGE))
    slug = manage.post("/api/notdiamond/v2/preferences/userPreferenceCreate", {"name": "fit"},
                       format="json").json()["preference_id"]  # fmt: skip
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "llm_providers": PROVIDERS,
            "preference_id": slug}  # fmt: skip

    refused = key_client(world.key).post(SELECT, body, format="json")

    # It named llm_providers and said to train with CustomRouter.fit, which the caller just did.
    error = refused.json()["error"]
    assert refused.status_code == 404 and error["param"] == "preference_id"
    assert "no trained version yet" in error["message"] and "training-runs" in error["message"]
