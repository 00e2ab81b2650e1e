"""categorisation.calibration: calibrated confidence and tiers."""

import datetime
from decimal import Decimal

import pytest

from categorisation import calibration, policy
from categorisation.calibration import Calibration, Case, Curve
from categorisation.replay import LookupIndex, ReplayRow, replay
from mlops import training
from mlops.models import ModelVersion
from tests.factories import created_event, expense_payload
from tests.mlops.synthetic import synthetic_rows


def cases_with_accuracy(confidence, accuracy, count, *, group=calibration.MODEL_ONLY, business="b1"):
    right = round(accuracy * count)
    return [Case(business, group, confidence, index < right) for index in range(count)]


def test_wilson_lower_bound_is_below_the_observed_share():
    assert calibration.wilson_lower_bound(99, 100) < 0.99
    assert calibration.wilson_lower_bound(990, 1000) > calibration.wilson_lower_bound(99, 100)
    assert calibration.wilson_lower_bound(0, 0) == 0.0


def test_auto_threshold_lowest_reaching_target():
    scored = [(0.99, True)] * 2000 + [(0.9, True)] * 500 + [(0.9, False)] * 100 + [(0.5, False)] * 300

    assert calibration.auto_threshold(scored) == 0.99


def test_auto_threshold_none_with_too_few_rows():
    assert calibration.auto_threshold([(0.99, True)] * 20) is None


def test_fit_maps_confidence_to_measured_accuracy():
    cases = cases_with_accuracy(0.9, 0.6, 1000) + cases_with_accuracy(0.3, 0.2, 1000)

    fitted = calibration.fit(cases)

    assert fitted.calibrate(calibration.MODEL_ONLY, 0.9) == pytest.approx(0.6, abs=0.02)
    assert fitted.calibrate(calibration.MODEL_ONLY, 0.3) == pytest.approx(0.2, abs=0.02)


def test_fit_keeps_an_unfitted_range_near_the_identity():
    # Every fitted prediction was right at 0.9, and a 0.2 guess must not inherit their accuracy.
    fitted = calibration.fit(cases_with_accuracy(0.9, 1.0, 40))

    assert fitted.calibrate(calibration.MODEL_ONLY, 0.2) < 0.5


def test_fit_small_group_uses_all_rows_curve():
    agree = cases_with_accuracy(0.6, 0.95, 500, group=calibration.AGREE)
    model_led = cases_with_accuracy(0.6, 0.4, 500, group=calibration.MODEL_LED)
    rare = cases_with_accuracy(0.6, 1.0, 5, group=calibration.LOOKUP_ONLY)

    fitted = calibration.fit(agree + model_led + rare)

    assert fitted.calibrate(calibration.AGREE, 0.6) > 0.9
    assert fitted.calibrate(calibration.MODEL_LED, 0.6) < 0.5
    assert calibration.LOOKUP_ONLY not in fitted.curves
    assert fitted.calibrate(calibration.LOOKUP_ONLY, 0.6) == fitted.calibrate(calibration.ALL, 0.6)


def test_generic_supplier_never_lifted():
    fitted = calibration.fit(cases_with_accuracy(0.6, 0.95, 500, group=calibration.AGREE))

    assert fitted.calibrate(calibration.AGREE, 0.6) > 0.9
    assert fitted.calibrate(calibration.GENERIC, 0.6) <= 0.6


def test_business_with_enough_rows_gets_its_own_threshold():
    careful = cases_with_accuracy(0.95, 1.0, 2000, business="careful")
    noisy = cases_with_accuracy(0.95, 0.9, 2000, business="noisy")
    small = cases_with_accuracy(0.95, 0.9, 50, business="small")

    fitted = calibration.fit(careful + noisy + small)

    assert fitted.business_auto_thresholds["noisy"] is None
    assert fitted.business_auto_thresholds["careful"] is not None
    assert "small" not in fitted.business_auto_thresholds
    top = fitted.calibrate(calibration.MODEL_ONLY, 0.95)
    assert fitted.tier("careful", 1.0) == calibration.AUTO_APPLY
    assert fitted.tier("noisy", top) != calibration.AUTO_APPLY


def test_calibration_round_trips_through_json():
    fitted = calibration.fit(cases_with_accuracy(0.9, 0.99, 3000) + cases_with_accuracy(0.4, 0.3, 500))

    again = Calibration.from_json(fitted.to_json())

    assert again == fitted


def candidates(*confidences, source="model"):
    return [
        policy.Candidate(category=f"c{index}", confidence=value, source=source)
        for index, value in enumerate(confidences)
    ]


def test_apply_calibrates_the_first_and_keeps_the_order():
    curve = Curve(x=(0.0, 1.0), y=(0.0, 0.5))
    fitted = Calibration(curves={calibration.ALL: curve}, auto_threshold=0.99)

    scaled, tier = calibration.apply(
        candidates(0.8, 0.4, 0.1), calibration=fitted, business_id="b1", group=calibration.AGREE
    )

    assert [candidate.confidence for candidate in scaled] == [0.4, 0.2, 0.05]
    assert tier == calibration.ABSTAIN


def test_apply_rule_is_auto_apply_even_without_calibration():
    _, tier = calibration.apply(candidates(1.0, source="rule"), calibration=None, business_id="b1", group="all")

    assert tier == calibration.AUTO_APPLY


def test_apply_without_calibration_never_auto_applies():
    _, confident = calibration.apply(candidates(0.99), calibration=None, business_id="b1", group="all")
    _, unsure = calibration.apply(candidates(0.2), calibration=None, business_id="b1", group="all")

    assert (confident, unsure) == (calibration.SUGGEST, calibration.ABSTAIN)


def test_apply_no_candidates_abstains():
    assert calibration.apply([], calibration=None, business_id="b1", group="all") == ([], calibration.ABSTAIN)


@pytest.mark.django_db
def test_for_model_version_reads_the_registry(active_model):
    version = ModelVersion.objects.get(version=active_model)
    # Training recorded a calibration from its holdout; replace it with a known one.
    assert "calibration" in version.metrics
    fitted = calibration.fit(cases_with_accuracy(0.9, 0.99, 3000))
    version.metrics = version.metrics | {"calibration": fitted.to_json()}
    version.save(update_fields=["metrics"])

    assert calibration.for_model_version(version.version) == fitted
    assert calibration.for_model_version("v-unknown") is None
    assert calibration.for_model_version(None) is None


# The offline replay that fits the calibration.


def replay_row(number, *, supplier="Blue Heron Cafe", category="Meals", day=1, business="b1"):
    return ReplayRow(
        business_id=business,
        expense_id=f"e-{number}",
        supplier=supplier,
        amount=Decimal("4.50"),
        date=datetime.date(2024, 1, day),
        category=category,
    )


def test_replay_predicts_each_row_before_learning_it():
    rows = [replay_row(1, category="Meals", day=1), replay_row(2, category="Travel", day=2)]

    first, second = replay(rows, past=LookupIndex(limit=50))

    assert first.candidates == []
    assert first.lookup_matches == 0
    assert [candidate.category for candidate in second.candidates] == ["Meals"]


def test_replay_lookup_is_per_business():
    rows = [replay_row(1, business="b2"), replay_row(2, business="b1", day=2)]

    _, answer = replay(rows, past=LookupIndex(limit=50))

    assert answer.candidates == []


@pytest.mark.django_db
def test_prediction_uses_the_business_lookup_weight(active_model, seed_events, api_client):
    version = ModelVersion.objects.get(version=active_model)
    # One past expense of the business is Travel, and the model predicts Meals for Harbour Bakery.
    seed_events([created_event(business_id="b-w", supplier="Harbour Bakery", category="Travel", date="2024-06-01")])
    identity = {"curves": {"all": {"x": [0.0, 1.0], "y": [0.0, 1.0]}}, "auto_threshold": None}

    def first_category(weights: dict) -> str:
        version.metrics = version.metrics | {"calibration": identity | weights}
        version.save(update_fields=["metrics"])
        calibration.for_model_version.cache_clear()
        payload = expense_payload(business_id="b-w", supplier="Harbour Bakery", description="", date="2024-06-02")
        response = api_client.post("/api/v1/predictions", payload, format="json")
        assert response.status_code == 200, response.content
        return response.json()["categories"][0]["category"]

    assert first_category({"lookup_weight": 0.9}) == "Travel"
    assert first_category({"lookup_weight": 0.0, "business_lookup_weights": {"b-w": 0.9}}) == "Travel"
    assert first_category({"lookup_weight": 0.9, "business_lookup_weights": {"b-w": 0.0}}) == "Meals"


def test_business_threshold_falls_back_unless_worse():
    overall = 0.9
    unproven = [(0.95, True)] * 40 + [(0.4, False)] * 300
    worse = [(0.95, True)] * 80 + [(0.95, False)] * 20 + [(0.4, False)] * 300

    assert calibration.business_threshold(unproven, overall) == overall
    assert calibration.business_threshold(worse, overall) is None
    assert calibration.business_threshold(unproven, None) is None


def test_wilson_upper_bound_is_above_the_observed_share():
    assert calibration.wilson_upper_bound(90, 100) > 0.9
    assert calibration.wilson_upper_bound(0, 0) == 1.0


def test_training_holdout_candidates_match_serving():
    assert training.HOLDOUT_CANDIDATES == policy.MODEL_CANDIDATES


def test_training_runs_the_holdout_analysis_named_in_settings(settings):
    settings.MODEL_HOLDOUT_ANALYSIS = ""
    rows = synthetic_rows(120)

    result = training.train(rows, min_rows=30, holdout_fraction=0.2)

    assert "calibration" not in result.metrics
    assert "top1_accuracy" in result.metrics
