import pytest

from mlops.evaluation import holdout_metrics

# Four holdout rows with known metrics. Row 0 is right at 0.9, row 1 wrong at 0.6 with the true
# label second, row 2 wrong at 0.8 with the true label third, and row 3 has no prediction.
TRUE_LABELS = ["A", "B", "A", "C"]
RANKED = [
    [{"category": "A", "confidence": 0.9}, {"category": "B", "confidence": 0.1}],
    [{"category": "A", "confidence": 0.6}, {"category": "B", "confidence": 0.4}],
    [{"category": "B", "confidence": 0.8}, {"category": "C", "confidence": 0.1}, {"category": "A", "confidence": 0.1}],
    [],
]


@pytest.fixture
def metrics():
    return holdout_metrics(true_labels=TRUE_LABELS, ranked=RANKED)


def test_holdout_metrics_accuracy(metrics):
    assert metrics["holdout_rows"] == 4
    assert metrics["top1_accuracy"] == 0.25
    assert metrics["top3_accuracy"] == 0.75


def test_holdout_metrics_macro_f1(metrics):
    # F1 is 0.5 for A (one of two predicted, one of two found) and 0 for B and C.
    assert metrics["macro_f1"] == pytest.approx(0.5 / 3, abs=1e-4)


def test_holdout_metrics_per_category(metrics):
    by_category = {row["category"]: row for row in metrics["per_category"]}

    assert by_category["A"] == {"category": "A", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert by_category["B"] == {"category": "B", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert by_category["C"] == {"category": "C", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_holdout_metrics_calibration_error(metrics):
    # Each predicted row sits alone in its bin, so its gap is |correct - confidence|, weighted 1/4.
    # The row without a prediction has confidence 0, which no bin (low, high] contains.
    assert metrics["expected_calibration_error"] == pytest.approx((0.1 + 0.6 + 0.8) / 4, abs=1e-4)


def test_holdout_metrics_thresholds(metrics):
    assert metrics["thresholds"] == [
        {"threshold": 0.3, "coverage": 0.75, "precision": 0.3333},
        {"threshold": 0.5, "coverage": 0.75, "precision": 0.3333},
        {"threshold": 0.7, "coverage": 0.5, "precision": 0.5},
        {"threshold": 0.9, "coverage": 0.25, "precision": 1.0},
    ]


def test_holdout_metrics_threshold_nothing_answered():
    metrics = holdout_metrics(true_labels=["A"], ranked=[[{"category": "A", "confidence": 0.2}]])

    assert metrics["thresholds"][0] == {"threshold": 0.3, "coverage": 0.0, "precision": None}


def test_holdout_metrics_perfect_confident_model():
    ranked = [[{"category": label, "confidence": 1.0}] for label in ("A", "B", "B")]

    metrics = holdout_metrics(true_labels=["A", "B", "B"], ranked=ranked)

    assert metrics["top1_accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["expected_calibration_error"] == 0.0


def test_holdout_metrics_empty_holdout():
    assert holdout_metrics(true_labels=[], ranked=[]) == {"holdout_rows": 0}
