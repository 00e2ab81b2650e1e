"""evaluation.metrics and evaluation.scoring on tiny examples computed by hand."""

import numpy as np
import pytest

from evaluation import metrics
from evaluation.cases import ALL_SOURCES, COMBINED, RULE, ReplayCase
from evaluation.scoring import learning_curve, score_cases

TRUTHS = ["A", "B", "A", "C"]
RANKED = [[("A", 0.9)], [("A", 0.62), ("B", 0.3)], [], [("C", 0.95), ("A", 0.05)]]
TIERS = (("auto", 0.9), ("suggest", 0.5), ("abstain", 0.0))


def test_source_metrics_hand_computed():
    figures = metrics.source_metrics(TRUTHS, RANKED)

    assert figures["rows"] == 4
    assert figures["coverage"] == 0.75
    # Top-1 right on rows 1 and 4; the unanswered row 3 counts as wrong.
    assert figures["top1_accuracy"] == 0.5
    assert figures["top1_accuracy_covered"] == 0.6667
    # B is second on row 2.
    assert figures["top3_accuracy"] == 0.75
    # F1: A (precision 1/2, recall 1/2) 0.5, B 0, C 1; the mean is 0.5.
    assert figures["macro_f1"] == 0.5


def test_source_metrics_no_rows():
    assert metrics.source_metrics([], []) == {"rows": 0}


def test_tier_table_partitions_rows():
    confidence, correct = metrics.top1_outcomes(TRUTHS, RANKED)

    table = metrics.tier_table(confidence, correct, TIERS)

    assert [(row["tier"], row["rows"], row["coverage"], row["precision"]) for row in table] == [
        ("auto", 2, 0.5, 1.0),
        ("suggest", 1, 0.25, 0.0),
        ("abstain", 1, 0.25, 0.0),
    ]


def test_tier_table_empty_tier_has_no_precision():
    table = metrics.tier_table(np.array([0.2]), np.array([True]), TIERS)

    assert table[0]["rows"] == 0
    assert table[0]["precision"] is None


def test_expected_calibration_error_hand_computed():
    confidence, correct = metrics.top1_outcomes(TRUTHS, RANKED)

    # Each row is alone in its bin: (|1 - 0.9| + |0 - 0.62| + |0 - 0| + |1 - 0.95|) / 4.
    assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(0.1925)


def test_expected_calibration_error_shares_bin():
    confidence = np.array([0.61, 0.62, 0.63])
    correct = np.array([True, True, False])

    # One bin, (0.6, 0.6667]: mean confidence 0.62, accuracy 2/3.
    assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(abs(2 / 3 - 0.62), abs=1e-4)


def test_reliability_bins_cover_every_row():
    confidence = np.array([0.0, 1.0, 0.5, 0.99])

    bins = metrics.reliability_bins(confidence, np.array([False, True, True, True]))

    assert len(bins) == metrics.CALIBRATION_BINS
    assert sum(row["rows"] for row in bins) == 4
    assert bins[0]["rows"] == 1
    assert bins[-1]["rows"] == 2


def test_precision_coverage_curve_hand_computed():
    confidence, correct = metrics.top1_outcomes(TRUTHS, RANKED)

    coverage, precision = metrics.precision_coverage_curve(confidence, correct)

    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert precision.tolist() == pytest.approx([1.0, 1.0, 2 / 3, 0.5])


def test_precision_coverage_curve_ties_enter_together():
    coverage, precision = metrics.precision_coverage_curve(np.array([0.8, 0.8, 0.4]), np.array([True, False, True]))

    assert coverage.tolist() == pytest.approx([2 / 3, 1.0])
    assert precision.tolist() == pytest.approx([0.5, 2 / 3])


def case(expense_id, occurrence, *, right, supplier="acme", business="b1"):
    truth = "Office"
    predicted = truth if right else "Travel"
    ranked = {source: [] if source == RULE else [(predicted, 0.8)] for source in ALL_SOURCES}
    return ReplayCase(
        business_id=business,
        expense_id=expense_id,
        supplier_key=supplier,
        truth=truth,
        occurrence=occurrence,
        ranked=ranked,
    )


def test_learning_curve_second_after_first():
    cases = [
        case("e1", 1, right=True, supplier="acme"),
        case("e2", 1, right=False, supplier="bolt"),
        case("e3", 2, right=True, supplier="acme"),
        case("e4", 2, right=False, supplier="bolt"),
        # The 1st expense of this pair was in the training part, so it is in neither split.
        case("e5", 2, right=True, supplier="crux"),
        case("e6", 7, right=True, supplier="dray"),
    ]

    curve = learning_curve(cases)

    assert curve["second_after_first_right"] == {"rows": 1, "top1_accuracy": 1.0}
    assert curve["second_after_first_corrected"] == {"rows": 1, "top1_accuracy": 0.0}
    by_occurrence = {row["occurrence"]: row for row in curve["by_occurrence"]}
    assert by_occurrence["1"] == {"occurrence": "1", "rows": 2, "top1_accuracy": 0.5}
    assert by_occurrence["2"]["top1_accuracy"] == pytest.approx(0.6667)
    assert by_occurrence["6+"]["rows"] == 1
    assert by_occurrence["3"] == {"occurrence": "3", "rows": 0, "top1_accuracy": None}


def test_learning_curve_pairs_are_per_business():
    cases = [case("e1", 1, right=True, business="b1"), case("e2", 2, right=True, business="b2")]

    curve = learning_curve(cases)

    assert curve["second_after_first_right"]["rows"] == 0


def test_score_cases_overall_qualifies_labels_by_business():
    # Both businesses call a category "Office", but b2's is always predicted as "Travel".
    cases = [case("e1", 1, right=True, business="b1"), case("e2", 1, right=False, business="b2")]

    scores = score_cases(cases, tiers=TIERS)

    # Over all businesses: b1/Office has F1 1, b2/Office F1 0.
    assert scores["overall"]["sources"][COMBINED]["macro_f1"] == 0.5
    assert scores["by_business"]["b2"]["sources"][COMBINED]["macro_f1"] == 0.0
    assert scores["overall"]["expected_calibration_error"][COMBINED] == pytest.approx(0.3)
