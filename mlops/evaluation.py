"""Holdout metrics of a model: accuracy, F1, calibration and precision by confidence threshold."""

import collections

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

CONFIDENCE_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
CALIBRATION_BINS = 10
# The confusion matrix keeps the most frequent holdout categories and folds the rest into one
# row and column, because a matrix of 200 categories cannot be read.
CONFUSION_MATRIX_MAX_CATEGORIES = 20
OTHER_CATEGORIES_LABEL = "(other categories)"


def holdout_metrics(*, true_labels: list[str], ranked: list[list[dict]]) -> dict:
    """Return metrics from each holdout row's true label and its ranked predictions.

    `ranked` is predict_records output. A row with no prediction counts as a miss.
    """
    count = len(true_labels)
    if count == 0:
        return {"holdout_rows": 0}
    top1 = [row[0]["category"] if row else "" for row in ranked]
    confidence = np.array([row[0]["confidence"] if row else 0.0 for row in ranked])
    correct = np.array([predicted == truth for predicted, truth in zip(top1, true_labels, strict=True)])
    in_top3 = [truth in {item["category"] for item in row[:3]} for row, truth in zip(ranked, true_labels, strict=True)]

    labels = sorted(set(true_labels))
    precision, recall, f1, support = precision_recall_fscore_support(true_labels, top1, labels=labels, zero_division=0)
    return {
        "holdout_rows": count,
        "top1_accuracy": round(float(correct.mean()), 4),
        "top3_accuracy": round(float(np.mean(in_top3)), 4),
        "macro_f1": round(float(f1_score(true_labels, top1, labels=labels, average="macro", zero_division=0)), 4),
        "expected_calibration_error": round(_calibration_error(confidence, correct), 4),
        "thresholds": [_threshold_row(threshold, confidence, correct) for threshold in CONFIDENCE_THRESHOLDS],
        "per_category": [
            {
                "category": label,
                "precision": round(float(p), 4),
                "recall": round(float(r), 4),
                "f1": round(float(f), 4),
                "support": int(s),
            }
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        ],
        "confusion_matrix": confusion_counts(true_labels=true_labels, predicted_labels=top1),
    }


def confusion_counts(*, true_labels: list[str], predicted_labels: list[str]) -> dict:
    """Return the confusion matrix of the most frequent true categories as counts.

    `counts[i][j]` is the number of rows of true category `labels[i]` predicted as `labels[j]`.
    The last label is OTHER_CATEGORIES_LABEL: every other category, and rows with no prediction.
    """
    frequency = collections.Counter(true_labels)
    ranked = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))
    shown = [label for label, _ in ranked[:CONFUSION_MATRIX_MAX_CATEGORIES]]
    kept = set(shown)
    labels = [*shown, OTHER_CATEGORIES_LABEL]

    folded_true = [label if label in kept else OTHER_CATEGORIES_LABEL for label in true_labels]
    folded_predicted = [label if label in kept else OTHER_CATEGORIES_LABEL for label in predicted_labels]
    counts = confusion_matrix(folded_true, folded_predicted, labels=labels)
    return {"labels": labels, "counts": counts.astype(int).tolist()}


def _threshold_row(threshold: float, confidence: np.ndarray, correct: np.ndarray) -> dict:
    answered = confidence >= threshold
    precision = float(correct[answered].mean()) if answered.any() else None
    return {
        "threshold": threshold,
        "coverage": round(float(answered.mean()), 4),
        "precision": None if precision is None else round(precision, 4),
    }


def _calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Expected calibration error over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)
