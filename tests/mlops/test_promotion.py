import dataclasses

import pytest
from django.core.cache import cache

from lookup.stores import get_lookup_store
from mlops import services
from mlops.evaluation import holdout_metrics
from mlops.inference import predict_records
from mlops.models import ModelVersion
from mlops.promotion import GateResult, check_promotion_gate
from mlops.snapshots import create_snapshot, load_snapshot_rows, training_data_reference
from mlops.training import TrainingRow, time_split, train
from tests.mlops.synthetic import CATEGORY_PROFILES, expense_change, synthetic_records

CATEGORIES = list(CATEGORY_PROFILES)
# Maps every category to the next one, so a model trained on it is wrong on every row.
SHIFTED = dict(zip(CATEGORIES, CATEGORIES[1:] + CATEGORIES[:1], strict=True))


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def snapshot(db):
    store = get_lookup_store()
    for index, (record, category, date) in enumerate(synthetic_records(200)):
        store.apply(expense_change(expense_id=f"e{index}", record=record, category=category, date=date))
    return create_snapshot()


# Every test's snapshot holds the same 200 rows, so each of the two models is trained once.
_trained = {}


def _register(snapshot, *, shifted: bool = False) -> ModelVersion:
    if shifted not in _trained:
        rows = load_snapshot_rows(snapshot)
        if shifted:
            rows = [dataclasses.replace(row, category=SHIFTED[row.category]) for row in rows]
        result = train(rows, min_rows=30, holdout_fraction=0.2)
        if shifted:
            # Training recorded metrics against the shifted labels; the gate must see how this
            # model does on the true ones, as a real candidate's metrics would show.
            _, holdout = time_split(load_snapshot_rows(snapshot), holdout_fraction=0.2)
            ranked = predict_records(result.bundle, [row.record for row in holdout], top_k=3)
            result.metrics = holdout_metrics(true_labels=[row.category for row in holdout], ranked=ranked)
        _trained[shifted] = result
    result = _trained[shifted]
    return services.register_version(result=result, training_data=training_data_reference(snapshot), snapshot=snapshot)


def test_gate_passes_without_active_version(snapshot):
    candidate = _register(snapshot)

    gate = check_promotion_gate(candidate=candidate, active=None)

    assert gate == GateResult(passed=True, reason="No version is active, so there is nothing to compare with.")


def test_gate_passes_equal_candidate(snapshot):
    active = _register(snapshot)
    candidate = _register(snapshot)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert gate.passed
    comparison = gate.comparison
    assert comparison["tolerance"] == 0.01
    assert comparison["holdout"] == {"snapshot_id": snapshot.pk, "rows": 40}
    assert comparison["candidate"]["version"] == candidate.version
    assert comparison["active"]["version"] == active.version
    assert comparison["candidate"]["top1_accuracy"] == comparison["active"]["top1_accuracy"]
    assert comparison["candidate"]["holdout_rows"] == comparison["active"]["holdout_rows"] == 40


def test_gate_holdout_is_snapshot_time_split(snapshot):
    candidate = _register(snapshot)
    active = _register(snapshot, shifted=True)
    _, holdout = time_split(load_snapshot_rows(snapshot), holdout_fraction=0.2)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert gate.comparison["holdout"]["rows"] == len(holdout)
    assert all(isinstance(row, TrainingRow) for row in holdout)


def test_gate_fails_worse_candidate(snapshot):
    active = _register(snapshot)
    candidate = _register(snapshot, shifted=True)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert not gate.passed
    assert gate.reason.startswith(f"{candidate.version} is worse than the active {active.version} beyond the tolerance")
    assert "top1_accuracy" in gate.reason
    assert gate.comparison["candidate"]["top1_accuracy"] < gate.comparison["active"]["top1_accuracy"] - 0.01


def test_gate_passes_better_candidate(snapshot):
    active = _register(snapshot, shifted=True)
    candidate = _register(snapshot)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert gate.passed
    assert gate.comparison["candidate"]["top1_accuracy"] > gate.comparison["active"]["top1_accuracy"]


def test_gate_tolerance_setting(snapshot, settings):
    settings.PROMOTION_TOLERANCE = 1.0
    active = _register(snapshot)
    candidate = _register(snapshot, shifted=True)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert gate.passed
    assert gate.comparison["tolerance"] == 1.0


def test_gate_fails_candidate_without_snapshot(register_model, snapshot):
    active = _register(snapshot)
    candidate = register_model()

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert not gate.passed
    assert "has no dataset snapshot" in gate.reason


def test_gate_passes_when_active_cannot_load(register_model, snapshot):
    active = register_model(metadata_changes={"sklearn_version": "0.24.2"})
    candidate = _register(snapshot)

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert gate.passed
    assert f"The active version {active.version} cannot be loaded" in gate.reason
    assert "scikit-learn 0.24.2" in gate.comparison["active"]["error"]


def test_gate_fails_when_candidate_cannot_load(snapshot):
    active = _register(snapshot)
    candidate = _register(snapshot)
    ModelVersion.objects.filter(pk=candidate.pk).update(artefact_sha256="0" * 64)
    candidate.refresh_from_db()

    gate = check_promotion_gate(candidate=candidate, active=active)

    assert not gate.passed
    assert f"The candidate {candidate.version} cannot be loaded" in gate.reason


def test_gate_result_cached(snapshot, monkeypatch):
    active = _register(snapshot)
    candidate = _register(snapshot)
    first = check_promotion_gate(candidate=candidate, active=active)

    def fail_if_scored(*args, **kwargs):
        raise AssertionError("the gate scored the versions again")

    monkeypatch.setattr("mlops.promotion._score_and_compare", fail_if_scored)

    assert check_promotion_gate(candidate=candidate, active=active) == first
