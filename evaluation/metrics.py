"""Quality figures of ranked predictions: accuracy, macro F1, coverage, confidence tiers, calibration."""

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from evaluation.baselines import Ranked

TOP_K = 3
CALIBRATION_BINS = 15
# Points of a precision-coverage curve kept in the JSON record. The chart draws every point.
CURVE_POINTS = 101


def source_metrics(truths: Sequence[str], ranked: Sequence[Ranked]) -> dict:
    """Return top-1, top-3, macro F1 and coverage of one source over the same rows.

    A row without a candidate counts as wrong in accuracy and F1 and as uncovered in coverage.
    Macro F1 averages over the true labels of these rows, so callers pass labels that are unique
    across businesses when they mix businesses.
    """
    rows = len(truths)
    if rows == 0:
        return {"rows": 0}
    top1 = [candidates[0][0] if candidates else "" for candidates in ranked]
    covered = np.array([bool(candidates) for candidates in ranked])
    correct = np.array([predicted == truth for predicted, truth in zip(top1, truths, strict=True)])
    top3 = [{category for category, _ in candidates[:TOP_K]} for candidates in ranked]
    in_top3 = [truth in categories for categories, truth in zip(top3, truths, strict=True)]
    labels = sorted(set(truths))
    return {
        "rows": rows,
        "coverage": round(float(covered.mean()), 4),
        "top1_accuracy": round(float(correct.mean()), 4),
        "top3_accuracy": round(float(np.mean(in_top3)), 4),
        "macro_f1": round(float(f1_score(truths, top1, labels=labels, average="macro", zero_division=0)), 4),
        "top1_accuracy_covered": round(float(correct[covered].mean()), 4) if covered.any() else None,
    }


def top1_outcomes(truths: Sequence[str], ranked: Sequence[Ranked]) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's top-1 confidence (0 without a candidate) and whether its top-1 is right."""
    confidence = np.array([candidates[0][1] if candidates else 0.0 for candidates in ranked], dtype=float)
    pairs = zip(ranked, truths, strict=True)
    correct = np.array([bool(candidates) and candidates[0][0] == truth for candidates, truth in pairs], dtype=bool)
    return confidence, correct


def tier_table(confidence: np.ndarray, correct: np.ndarray, tiers: Sequence[tuple[str, float]]) -> list[dict]:
    """Return, per tier, the share of rows whose top-1 confidence falls in it and the top-1 precision there.

    `tiers` is ordered by descending minimum confidence. A tier contains the rows at or above its
    minimum and below the previous tier's, so the tiers partition the rows. Precision is None
    for an empty tier.
    """
    table = []
    upper = np.inf
    for name, minimum in tiers:
        in_tier = (confidence >= minimum) & (confidence < upper)
        table.append(
            {
                "tier": name,
                "min_confidence": minimum,
                "rows": int(in_tier.sum()),
                "coverage": round(float(in_tier.mean()), 4) if len(confidence) else 0.0,
                "precision": round(float(correct[in_tier].mean()), 4) if in_tier.any() else None,
            }
        )
        upper = minimum
    return table


def assigned_tier_table(tiers: Sequence[str], correct: np.ndarray, names: Sequence[str]) -> list[dict]:
    """Return, per tier name, the share of rows the service put in it and the top-1 precision there.

    Rows carry their tier, as the service assigned it from calibrated confidence and per-business
    thresholds, so a tier has no single minimum confidence (`min_confidence` is None).
    """
    assigned = np.array(tiers)
    table = []
    for name in names:
        in_tier = assigned == name
        table.append(
            {
                "tier": name,
                "min_confidence": None,
                "rows": int(in_tier.sum()),
                "coverage": round(float(in_tier.mean()), 4) if len(assigned) else 0.0,
                "precision": round(float(correct[in_tier].mean()), 4) if in_tier.any() else None,
            }
        )
    return table


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, *, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Return equal-width confidence bins with their row count, mean confidence and accuracy.

    A bin contains confidences in (low, high], and the first bin also contains 0, so every row is in
    one bin. Empty bins are included with None figures.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    # np.digitize with right=True puts a value equal to an upper edge into that edge's bin.
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    result = []
    for position in range(bins):
        in_bin = index == position
        result.append(
            {
                "low": round(float(edges[position]), 4),
                "high": round(float(edges[position + 1]), 4),
                "rows": int(in_bin.sum()),
                "mean_confidence": round(float(confidence[in_bin].mean()), 4) if in_bin.any() else None,
                "accuracy": round(float(correct[in_bin].mean()), 4) if in_bin.any() else None,
            }
        )
    return result


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = CALIBRATION_BINS) -> float:
    """Return the row-weighted mean gap between accuracy and mean confidence over equal-width bins."""
    if len(confidence) == 0:
        return 0.0
    total = 0.0
    for row in reliability_bins(confidence, correct, bins=bins):
        if row["rows"]:
            total += row["rows"] * abs(row["accuracy"] - row["mean_confidence"])
    return round(total / len(confidence), 4)


def precision_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return coverage and top-1 precision when only rows at or above each confidence get a prediction.

    Rows of equal confidence enter together, so the curve has one point per distinct confidence.
    """
    if len(confidence) == 0:
        return np.array([]), np.array([])
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence = confidence[order]
    hits = np.cumsum(correct[order])
    answered = np.arange(1, len(order) + 1)
    # The last row of each run of equal confidences.
    last = np.flatnonzero(np.append(sorted_confidence[1:] != sorted_confidence[:-1], True))
    return answered[last] / len(order), hits[last] / answered[last]


def sampled_curve(coverage: np.ndarray, precision: np.ndarray, *, points: int = CURVE_POINTS) -> list[dict]:
    """Return the curve's precision at evenly spaced coverages (the first point at or past each)."""
    if len(coverage) == 0:
        return []
    sampled = []
    for target in np.linspace(0.0, 1.0, points)[1:]:
        position = min(int(np.searchsorted(coverage, target - 1e-12)), len(coverage) - 1)
        point = {"coverage": round(float(coverage[position]), 4), "precision": round(float(precision[position]), 4)}
        sampled.append(point)
    return sampled
