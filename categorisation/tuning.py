"""Tuning of the combination policy on a model's holdout, run by training.

`mlops.training.train` calls `fit_calibration` (setting MODEL_HOLDOUT_ANALYSIS) with the
training split, the holdout and the model's ranked categories for each holdout row.
"""

import collections
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from django.conf import settings

from categorisation import calibration, policy
from categorisation.replay import LookupIndex, ReplayRow, calibration_cases, combine_sources, replay_sources
from lookup.normalisation import supplier_key
from mlops.training import TrainingRow


def fit_calibration(train_rows: list[TrainingRow], holdout_rows: list[TrainingRow], ranked: list[list[dict]]) -> dict:
    """Replay the holdout through the lookup and the policy; tune the lookup weights and fit the calibration.

    The lookup starts from the training split and learns each holdout expense after predicting
    it, in date order per business, as the service would have. The replay's candidates are blended
    once per weight of calibration.LOOKUP_WEIGHTS: the weight with the best top-1 is kept for each business with
    calibration.MIN_BUSINESS_ROWS holdout rows, and across businesses for the others. The
    calibration is then fitted on the answers blended with the kept weights. Returns the
    calibration (JSON) and what it measured on the fitted rows.
    """
    # Rows are numbered in time_split's order, by date within each business, so the index learns
    # each business's expenses in (date, expense_id) order.
    learned = [_replay_row(row, position) for position, row in enumerate(train_rows)]
    rows = [_replay_row(row, len(train_rows) + i, ranked[i]) for i, row in enumerate(holdout_rows)]

    past = LookupIndex(limit=settings.LOOKUP_MAX_MATCHES)
    for row in learned:
        if row.date is not None:
            past.learn(row.expense(supplier_key(row.supplier)))
    # The lookup's and the model's candidates do not depend on the weight, so they are replayed once.
    sources = replay_sources(rows, past=past)

    def replayed(weights: Callable[[str], float]) -> list:
        return calibration_cases(combine_sources(sources, top_k=3, lookup_weights=weights))

    right = collections.defaultdict(collections.Counter)  # weight -> business -> right answers
    for weight in calibration.LOOKUP_WEIGHTS:
        for case in replayed(lambda business_id, weight=weight: weight):
            right[weight][case.business_id] += case.correct
    counts = collections.Counter(row.business_id for row in rows)
    overall = max(
        calibration.LOOKUP_WEIGHTS, key=lambda weight: (right[weight].total(), weight == policy.LOOKUP_WEIGHT)
    )
    per_business = {
        business: max(calibration.LOOKUP_WEIGHTS, key=lambda weight: (right[weight][business], weight == overall))
        for business, count in sorted(counts.items())
        if count >= calibration.MIN_BUSINESS_ROWS
    }
    cases = replayed(lambda business_id: per_business.get(business_id, overall))
    fitted = calibration.fit(cases, lookup_weight=overall, business_lookup_weights=per_business)
    if fitted is None:
        return {}
    tiers = collections.Counter()
    right = collections.Counter()
    for case in cases:
        tier = fitted.tier(case.business_id, fitted.calibrate(case.group, case.confidence))
        tiers[tier] += 1
        right[tier] += case.correct
    return {
        "calibration": fitted.to_json(),
        "combined_top1_accuracy": round(sum(case.correct for case in cases) / len(cases), 4),
        "tiers_on_holdout": {
            tier: {
                "coverage": round(tiers[tier] / len(cases), 4),
                "precision": round(right[tier] / tiers[tier], 4) if tiers[tier] else None,
            }
            for tier in calibration.TIERS
        },
    }


def _replay_row(row: TrainingRow, position: int, ranked: list[dict] = ()) -> ReplayRow:
    record = row.record
    try:
        amount = Decimal(str(record.get("amount", "0")))
    except InvalidOperation:
        amount = Decimal(0)
    return ReplayRow(
        business_id=record.get("business_id", ""),
        expense_id=f"{position:012d}",
        supplier=record.get("supplier", ""),
        amount=amount,
        date=row.date,
        category=row.category,
        department=record.get("department", ""),
        ranked=tuple(ranked),
    )
