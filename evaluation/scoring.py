"""Figures of one replayed file: per source and baseline, overall and per business, and the learning curve."""

import collections
from collections.abc import Sequence

import numpy as np

from categorisation.calibration import TIERS
from evaluation import metrics
from evaluation.cases import ALL_SOURCES, COMBINED, CONFIDENCE_SOURCES, ReplayCase

# The learning curve groups a business's n-th expense from one supplier key; every later one is one group.
LEARNING_CURVE_MAX_OCCURRENCE = 6


def score_cases(cases: Sequence[ReplayCase], *, tiers: Sequence[tuple[str, float]]) -> dict:
    """Return the figures of every source overall and per business.

    Overall macro F1 treats the same category name in two businesses as two labels, because each
    business has its own chart of accounts.
    """
    by_business = collections.defaultdict(list)
    for case in cases:
        by_business[case.business_id].append(case)
    return {
        "overall": score_scope(cases, tiers=tiers, qualify=True),
        "by_business": {
            business_id: score_scope(business_cases, tiers=tiers, qualify=False)
            for business_id, business_cases in sorted(by_business.items())
        },
    }


def score_scope(cases: Sequence[ReplayCase], *, tiers: Sequence[tuple[str, float]], qualify: bool) -> dict:
    """Return per-source metrics, tier tables, ECE and the learning curve of one set of cases."""
    truths = [_label(case.business_id, case.truth, qualify) for case in cases]
    sources = {}
    for source in ALL_SOURCES:
        ranked = [[(_label(case.business_id, c, qualify), p) for c, p in case.ranked[source]] for case in cases]
        sources[source] = metrics.source_metrics(truths, ranked)

    tier_tables, calibration, reliability, curves = {}, {}, {}, {}
    for source in CONFIDENCE_SOURCES:
        confidence, correct = metrics.top1_outcomes([case.truth for case in cases], [c.ranked[source] for c in cases])
        if source == COMBINED and cases and all(case.tier for case in cases):
            tier_tables[source] = metrics.assigned_tier_table([case.tier for case in cases], correct, TIERS)
        else:
            tier_tables[source] = metrics.tier_table(confidence, correct, tiers)
        calibration[source] = metrics.expected_calibration_error(confidence, correct)
        reliability[source] = metrics.reliability_bins(confidence, correct)
        curves[source] = metrics.sampled_curve(*metrics.precision_coverage_curve(confidence, correct))
    return {
        "rows": len(cases),
        "sources": sources,
        "tiers": tier_tables,
        "expected_calibration_error": calibration,
        "reliability_bins": reliability,
        "precision_coverage": curves,
        "learning_curve": learning_curve(cases),
    }


def learning_curve(cases: Sequence[ReplayCase]) -> dict:
    """Return combined top-1 accuracy by occurrence, and on 2nd expenses split by the 1st's outcome.

    A case's occurrence counts every earlier expense of its business and supplier key in the
    file, training part included. The 1st expense of a pair counts as corrected when the combined
    top-1 for it was wrong, because staff then changed the category. A 2nd expense whose 1st was
    in the training part has no predicted 1st, so it is in neither split.
    """
    groups = collections.defaultdict(list)
    first_correct: dict[tuple[str, str], bool] = {}
    after_right, after_corrected = [], []
    for case in cases:
        correct = case.top1_correct("combined")
        groups[min(case.occurrence, LEARNING_CURVE_MAX_OCCURRENCE)].append(correct)
        pair = (case.business_id, case.supplier_key)
        if case.occurrence == 1:
            first_correct[pair] = correct
        elif case.occurrence == 2 and pair in first_correct:
            (after_right if first_correct[pair] else after_corrected).append(correct)

    by_occurrence = []
    for occurrence in range(1, LEARNING_CURVE_MAX_OCCURRENCE + 1):
        outcomes = groups.get(occurrence, [])
        label = f"{occurrence}+" if occurrence == LEARNING_CURVE_MAX_OCCURRENCE else str(occurrence)
        by_occurrence.append({"occurrence": label, **_accuracy(outcomes)})
    return {
        "by_occurrence": by_occurrence,
        "second_after_first_right": _accuracy(after_right),
        "second_after_first_corrected": _accuracy(after_corrected),
    }


def _accuracy(outcomes: list[bool]) -> dict:
    return {"rows": len(outcomes), "top1_accuracy": round(float(np.mean(outcomes)), 4) if outcomes else None}


def _label(business_id: str, category: str, qualify: bool) -> str:
    # "\x1f" (unit separator) cannot occur in a CSV category, so qualified labels stay distinct.
    return f"{business_id}\x1f{category}" if qualify else category
