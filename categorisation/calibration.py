"""Calibrated confidence and the tier a client can act on.

The blended confidence of `policy.combine` ranks categories well but is not a probability. A
calibration, fitted when a model is trained, maps the top candidate's blended confidence to the
share of such answers that were right, and sets the thresholds of three tiers:

- `auto_apply`: the answer may be applied without review. Its threshold is the lowest calibrated
  confidence at which the fitted rows reached TARGET_AUTO_PRECISION, counted cautiously (the
  Wilson lower bound), per business where the business has enough rows, else across businesses.
- `suggest`: show the answer for a person to confirm; calibrated confidence SUGGEST_THRESHOLD
  or more, so it is more often right than wrong.
- `abstain`: no confident answer.

A matching override rule is always `auto_apply`: staff wrote it. Without a calibration (no
model is active yet) nothing is applied automatically.

Answers are calibrated by group, because the same blended confidence means more when the lookup
and the model agree than when only one of them answers.
"""

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np
from django.db import DatabaseError
from sklearn.isotonic import IsotonicRegression

from categorisation import policy

logger = logging.getLogger(__name__)

AUTO_APPLY = "auto_apply"
SUGGEST = "suggest"
ABSTAIN = "abstain"
TIERS = (AUTO_APPLY, SUGGEST, ABSTAIN)

TARGET_AUTO_PRECISION = 0.98
SUGGEST_THRESHOLD = 0.5
# One-sided 95 % Wilson bound: a threshold counts as reaching the target only when the target is
# below the bound, so a handful of lucky rows cannot open the auto-apply tier.
WILSON_Z = 1.645
# A business gets thresholds of its own from this many fitted rows. A group gets its own curve
# from this many rows; a smaller group uses the curve of all rows.
MIN_BUSINESS_ROWS = 300
MIN_GROUP_ROWS = 100
# The lookup weights tried for each business when a model is trained. None is below 0.4, so one
# past expense (lookup confidence 0.5) still outranks a model that is not sure of another category.
LOOKUP_WEIGHTS = (0.4, 0.5, 0.6, 0.7, 0.8)
# The identity prior of each curve: this many evenly spaced pseudo-cases, each counting as this
# many fitted rows.
PRIOR_POINTS = 21
PRIOR_WEIGHT = 3.0

# Groups of predictions, by which sources support the top category.
AGREE = "agree"  # the lookup's leading category is the model's first category too
LOOKUP_LED = "lookup"  # the lookup's leader ranks first and the model prefers another or is absent
MODEL_LED = "model"  # the model's category ranks first against the lookup's leader
MODEL_ONLY = "model_only"  # the business has no past expense of this supplier
LOOKUP_ONLY = "lookup_only"  # the model returned nothing (none active, or it failed)
GENERIC = "generic"  # the supplier key names only a payment processor
ALL = "all"


@dataclass(frozen=True)
class Case:
    """A fitted prediction: its business, group, blended confidence and whether it was right."""

    business_id: str
    group: str
    confidence: float
    correct: bool


@dataclass(frozen=True)
class Curve:
    """An isotonic map from blended to calibrated confidence, as its breakpoints."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, value: float) -> float:
        return float(np.interp(value, self._x_array, self._y_array))

    # np.interp converts tuples to arrays on every call, which cost more than the interpolation.
    @cached_property
    def _x_array(self) -> np.ndarray:
        return np.asarray(self.x, dtype=np.float64)

    @cached_property
    def _y_array(self) -> np.ndarray:
        return np.asarray(self.y, dtype=np.float64)


@dataclass(frozen=True)
class Calibration:
    curves: dict[str, Curve]
    auto_threshold: float | None
    business_auto_thresholds: dict[str, float | None] = field(default_factory=dict)
    fitted_rows: int = 0
    # The lookup's share of the blend, tuned on the same holdout (see categorisation.tuning.fit_calibration).
    lookup_weight: float = policy.LOOKUP_WEIGHT
    business_lookup_weights: dict[str, float] = field(default_factory=dict)

    def lookup_weight_for(self, business_id: str) -> float:
        return self.business_lookup_weights.get(business_id, self.lookup_weight)

    def calibrate(self, group: str, confidence: float) -> float:
        curve = self.curves.get(group)
        if curve is not None:
            value = curve(confidence)
        elif group == GENERIC:
            # The blend already caps a processor-only match; the curve of all rows must not lift it.
            value = min(confidence, self.curves[ALL](confidence))
        else:
            value = self.curves[ALL](confidence)
        return round(min(1.0, max(0.0, value)), 6)

    def tier(self, business_id: str, calibrated: float) -> str:
        threshold = self.business_auto_thresholds.get(business_id, self.auto_threshold)
        if threshold is not None and calibrated >= threshold:
            return AUTO_APPLY
        return SUGGEST if calibrated >= SUGGEST_THRESHOLD else ABSTAIN

    def to_json(self) -> dict:
        return {
            "curves": {group: {"x": list(curve.x), "y": list(curve.y)} for group, curve in self.curves.items()},
            "auto_threshold": self.auto_threshold,
            "business_auto_thresholds": self.business_auto_thresholds,
            "fitted_rows": self.fitted_rows,
            "lookup_weight": self.lookup_weight,
            "business_lookup_weights": self.business_lookup_weights,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls(
            curves={group: Curve(x=tuple(c["x"]), y=tuple(c["y"])) for group, c in data["curves"].items()},
            auto_threshold=data["auto_threshold"],
            business_auto_thresholds=dict(data.get("business_auto_thresholds", {})),
            fitted_rows=data.get("fitted_rows", 0),
            lookup_weight=data.get("lookup_weight", policy.LOOKUP_WEIGHT),
            business_lookup_weights=dict(data.get("business_lookup_weights", {})),
        )


@lru_cache(maxsize=8)
def for_model_version(version: str | None) -> Calibration | None:
    """Return the calibration recorded with a model version, or None if it has none.

    Cached per process: a version's metrics are written once, when it is registered.
    """
    if version is None:
        return None
    from mlops.models import ModelVersion

    try:
        metrics = ModelVersion.objects.filter(version=version).values_list("metrics", flat=True).first()
    except DatabaseError:
        logger.warning("Reading the calibration of model %s failed; returning uncalibrated confidences", version)
        for_model_version.cache_clear()
        return None
    if not metrics or "calibration" not in metrics:
        return None
    return Calibration.from_json(metrics["calibration"])


def answer_group(*, top, lookup: list, model: list, generic: bool) -> str:
    """Return the calibration group of a top candidate from the candidates it was combined from."""
    if generic and lookup:
        return GENERIC
    if not model:
        return LOOKUP_ONLY
    if not lookup:
        return MODEL_ONLY
    leader, model_first = lookup[0].category, model[0].category
    if top.category == leader == model_first:
        return AGREE
    return LOOKUP_LED if top.category == leader else MODEL_LED


def fit(
    cases: list[Case], *, lookup_weight: float = policy.LOOKUP_WEIGHT, business_lookup_weights: dict | None = None
) -> Calibration | None:
    """Fit curves per group and the auto-apply thresholds; None when there are no cases.

    The cases must come from answers blended with the given lookup weights, which are recorded.
    """
    if not cases:
        return None
    by_group = defaultdict(list)
    for case in cases:
        by_group[case.group].append(case)
    curves = {ALL: _fit_curve(cases)}
    for group, members in by_group.items():
        if len(members) >= MIN_GROUP_ROWS:
            curves[group] = _fit_curve(members)

    provisional = Calibration(curves=curves, auto_threshold=None)
    calibrated = [(case, provisional.calibrate(case.group, case.confidence)) for case in cases]
    by_business = defaultdict(list)
    for case, value in calibrated:
        by_business[case.business_id].append((value, case.correct))
    overall = auto_threshold([(value, case.correct) for case, value in calibrated])
    return Calibration(
        curves=curves,
        auto_threshold=overall,
        business_auto_thresholds={
            business: business_threshold(scored, overall)
            for business, scored in sorted(by_business.items())
            if len(scored) >= MIN_BUSINESS_ROWS
        },
        fitted_rows=len(cases),
        lookup_weight=lookup_weight,
        business_lookup_weights=business_lookup_weights or {},
    )


def auto_threshold(scored: list[tuple[float, bool]], target: float = TARGET_AUTO_PRECISION) -> float | None:
    """Return the lowest confidence whose answers at or above it reach the target precision.

    Precision is counted by its Wilson lower bound. Returns None when no threshold reaches it.
    """
    ordered = sorted(scored, key=lambda item: -item[0])
    best, right = None, 0
    for count, (value, correct) in enumerate(ordered, start=1):
        right += correct
        next_value = ordered[count][0] if count < len(ordered) else None
        if next_value == value:
            continue  # a threshold cannot split equal confidences
        if wilson_lower_bound(right, count) >= target:
            best = value
    return best


def business_threshold(scored: list[tuple[float, bool]], overall: float | None) -> float | None:
    """Return a business's auto-apply threshold from its own answers.

    Its own threshold where its answers prove the target. Otherwise the threshold of all
    businesses, unless the business's answers at or above it show a precision below the target
    (the Wilson upper bound under it), and then None: the business never auto-applies.
    """
    own = auto_threshold(scored)
    if own is not None or overall is None:
        return own
    above = [correct for value, correct in scored if value >= overall]
    if above and wilson_upper_bound(sum(above), len(above)) < TARGET_AUTO_PRECISION:
        return None
    return overall


def wilson_upper_bound(successes: int, total: int, z: float = WILSON_Z) -> float:
    return _wilson_interval(successes, total, z)[1] if total else 1.0


def wilson_lower_bound(successes: int, total: int, z: float = WILSON_Z) -> float:
    return _wilson_interval(successes, total, z)[0] if total else 0.0


def _wilson_interval(successes: int, total: int, z: float) -> tuple[float, float]:
    share = successes / total
    denominator = 1 + z * z / total
    centre = share + z * z / (2 * total)
    margin = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    return (centre - margin) / denominator, (centre + margin) / denominator


def apply(candidates: list, *, calibration: Calibration | None, business_id: str, group: str) -> tuple[list, str]:
    """Return the candidates with calibrated confidences, and the prediction's tier.

    The first candidate's confidence becomes its calibrated probability of being right. The others
    are scaled by the same factor, so their order and ratios are kept.
    """
    if not candidates:
        return candidates, ABSTAIN
    top = candidates[0]
    if top.source == "rule":
        return candidates, AUTO_APPLY
    if calibration is None:
        return candidates, SUGGEST if top.confidence >= SUGGEST_THRESHOLD else ABSTAIN
    calibrated = calibration.calibrate(group, top.confidence)
    factor = calibrated / top.confidence if top.confidence > 0 else 0.0
    scaled = [policy.with_confidence(top, calibrated)]
    scaled += [
        policy.with_confidence(candidate, round(min(calibrated, candidate.confidence * factor), 6))
        for candidate in candidates[1:]
    ]
    return scaled, calibration.tier(business_id, calibrated)


def _fit_curve(cases: list[Case]) -> Curve:
    """Fit an isotonic curve, pulled towards the identity where there are few cases.

    PRIOR_POINTS pseudo-cases on the diagonal, of PRIOR_WEIGHT each, keep a confidence range the
    fitted rows never reached (an unseen supplier's low model probability, say) near its blended
    value instead of taking the value of the nearest fitted rows.
    """
    prior = np.linspace(0.0, 1.0, PRIOR_POINTS)
    confidences = np.concatenate([[case.confidence for case in cases], prior])
    correct = np.concatenate([[float(case.correct) for case in cases], prior])
    weights = np.concatenate([np.ones(len(cases)), np.full(PRIOR_POINTS, PRIOR_WEIGHT)])
    regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    regression.fit(confidences, correct, sample_weight=weights)
    x = [round(float(value), 6) for value in regression.X_thresholds_]
    y = [round(float(value), 6) for value in regression.y_thresholds_]
    if len(x) == 1:
        x, y = [0.0, 1.0], [y[0], y[0]]
    return Curve(x=tuple(x), y=tuple(y))
