"""Serving API of ``training.predictor``: cached loading, ranking, subsets and prices."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import organization_make
from tests.training.conftest import csv_bytes, synthetic_frame
from training import execution, predictor, services
from training.models import Router, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def router(media: Any) -> Router:
    organization = organization_make()
    dataset = services.dataset_create(
        organization=organization,
        name="d",
        upload=SimpleUploadedFile("d.csv", csv_bytes(synthetic_frame(120))),
        columns=None,
        maximize=True,
    )
    services.dataset_validate(dataset_id=dataset.pk)
    dataset.refresh_from_db()
    router = services.router_create(organization=organization, slug="r", name="r", candidates=[])
    run = services.training_run_start(router=router, dataset=dataset, options={"folds": 2})
    assert execution.training_run_execute(run_id=run.pk) == RunStatus.SUCCEEDED
    router.refresh_from_db()
    predictor.predictor_cache_clear()
    return router


def test_rank_orders_every_candidate_by_utility(router: Router) -> None:
    assert router.active_version_id is not None
    loaded = predictor.predictor_load(router.active_version_id)

    ranked = loaded.rank("Compute 12 + 7 * 3.", 0.0, None, None)

    assert [r.model for r in ranked] == ["math-model", "prose-model"]
    assert ranked[0].utility >= ranked[1].utility
    assert ranked[0].expected_cost == pytest.approx(0.001)


def test_a_version_loads_once_per_process(router: Router) -> None:
    assert router.active_version_id is not None
    first = predictor.predictor_load(router.active_version_id)
    assert predictor.predictor_load(router.active_version_id) is first


def test_candidates_restrict_and_unknown_ids_are_ignored(router: Router) -> None:
    loaded = predictor.predictor_load(router.active_version_id or 0)
    ranked = loaded.rank("Write a poem about a comet.", 0.5, ["prose-model", "not-trained"], None)
    assert [r.model for r in ranked] == ["prose-model"]
    assert loaded.rank("hello", 0.5, ["not-trained"], None) == []


def test_prices_show_expected_costs_but_the_decision_keeps_the_calibrated_costs(
    router: Router,
) -> None:
    """One definition of a tradeoff: the costs the version was calibrated (and reported) with.
    Catalog prices that invert the training costs change the expected costs shown, not the
    choice (training had math-model cheap, so tradeoff 1 still picks it)."""
    loaded = predictor.predictor_load(router.active_version_id or 0)
    prompt = "Write a poem about a comet."
    ranked = loaded.rank(prompt, 1.0, None, {"math-model": 30.0, "prose-model": 0.5})
    assert ranked[0].model == "math-model"
    assert ranked == sorted(ranked, key=lambda r: -r.utility)
    costs = {r.model: r.expected_cost for r in ranked}
    assert costs["math-model"] > costs["prose-model"]  # from the prices given


def test_corrupted_artifacts_are_refused_at_load(router: Router) -> None:
    version = router.active_version
    assert version is not None
    path = version.artifact_files["router.json"]["path"]
    default_storage.delete(path)
    default_storage.save(path, ContentFile(b"{}"))
    with pytest.raises(predictor.ArtifactError):
        predictor.predictor_for_version(version)


def test_a_loaded_version_has_built_everything_its_first_decision_reads(router: Router) -> None:
    """The load (activation, or the serving processes' warm-up) pays every one-time cost: the
    first decision after it builds nothing (projection, forest and its exit masks, the bigram
    table, the char n-gram index)."""
    version = router.active_version
    assert version is not None

    loaded = predictor.predictor_for_version(version, warmup=True)

    trained = loaded.router
    assert trained._projection is not None and trained._forest_slot is not None
    assert trained._forest is not None and trained._forest.exits is not None
    assert trained.featurizer._bigram_ids is not None
    assert trained.featurizer._char_index_built and trained.featurizer._char_index is not None
