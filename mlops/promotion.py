"""The promotion gate: a candidate version deploys only if it is not worse than the active one."""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from mlops.artefacts import ArtefactError
from mlops.evaluation import holdout_metrics
from mlops.inference import IncompatibleModelError, predict_records
from mlops.models import ModelVersion
from mlops.predictors import load_version_bundle
from mlops.snapshots import SnapshotError, load_snapshot_rows
from mlops.training import TrainingRow, time_split

logger = logging.getLogger(__name__)

# The metrics that the gate compares, each higher-is-better.
GATED_METRICS = ("top1_accuracy", "top3_accuracy")
# The metrics copied into the comparison for staff to read.
COMPARED_METRICS = ("holdout_rows", *GATED_METRICS, "macro_f1", "expected_calibration_error")
# Versions, snapshots and artefacts are immutable, so a result for one pair of versions and one
# setting of tolerance and holdout stays true. Caching it spares the deploy the second scoring
# after the admin's confirmation page.
CACHE_SECONDS = 3600
# Absorbs float rounding, so that a drop of exactly the tolerance passes.
_EPSILON = 1e-9

_LOAD_ERRORS = (ArtefactError, IncompatibleModelError, OSError, ValueError)


@dataclass(frozen=True)
class GateResult:
    """Whether a candidate may be deployed, why, and both versions' metrics on one holdout."""

    passed: bool
    reason: str
    comparison: dict = field(default_factory=dict)


def check_promotion_gate(*, candidate: ModelVersion, active: ModelVersion | None) -> GateResult:
    """Compare the candidate and the active version on the candidate snapshot's time-based holdout.

    The candidate's figures are those recorded at training on that holdout; the active version
    is scored on it now.

    Passes when nothing is active, or when neither top-1 nor top-3 accuracy is lower than the
    active version's by more than PROMOTION_TOLERANCE. Fails, with the reason, when the candidate
    has no snapshot or its snapshot or artefact cannot be read. An active version whose artefact
    cannot be loaded serves nothing, so the candidate passes.
    """
    tolerance = settings.PROMOTION_TOLERANCE
    if active is None:
        return GateResult(passed=True, reason="No version is active, so there is nothing to compare with.")
    if active.pk == candidate.pk:
        return GateResult(passed=True, reason=f"{candidate.version} is the active version already.")

    key = f"promotion-gate:{candidate.version}:{active.version}:{tolerance}:{settings.MODEL_HOLDOUT_FRACTION}"
    result = cache.get(key)
    if result is None:
        result = _score_and_compare(candidate=candidate, active=active, tolerance=tolerance)
        cache.set(key, result, CACHE_SECONDS)
    return result


def _score_and_compare(*, candidate: ModelVersion, active: ModelVersion, tolerance: float) -> GateResult:
    if candidate.snapshot is None:
        return GateResult(
            passed=False,
            reason=f"{candidate.version} has no dataset snapshot, so there is no holdout to compare on. "
            "Train a new version, or deploy with an override reason.",
        )
    try:
        holdout = _holdout_rows(candidate)
    except SnapshotError as exc:
        return GateResult(passed=False, reason=f"The candidate's holdout cannot be read: {exc}")
    if not holdout:
        return GateResult(
            passed=False,
            reason=f"The holdout of snapshot {candidate.snapshot_id} is empty, because every business has too few "
            "expenses to hold any out. Deploy with an override reason.",
        )

    try:
        # The figures come from training, but a candidate that cannot load must not pass.
        load_version_bundle(candidate)
    except _LOAD_ERRORS as exc:
        return GateResult(passed=False, reason=f"The candidate {candidate.version} cannot be loaded: {exc}")
    candidate_metrics = _recorded_holdout_metrics(candidate)
    if candidate_metrics is None:
        return GateResult(
            passed=False,
            reason=f"{candidate.version} has no recorded holdout metrics to compare. Deploy with an override reason.",
        )
    try:
        active_metrics = _score(active, holdout)
    except _LOAD_ERRORS as exc:
        logger.warning(
            "Active model cannot be loaded; the promotion gate lets the candidate pass",
            extra={"model_version": active.version, "error": str(exc)},
        )
        return GateResult(
            passed=True,
            reason=f"The active version {active.version} cannot be loaded, so it serves nothing: {exc}",
            comparison={
                "holdout": {"snapshot_id": candidate.snapshot_id, "rows": len(holdout)},
                "tolerance": tolerance,
                "candidate": {"version": candidate.version, **candidate_metrics},
                "active": {"version": active.version, "error": str(exc)},
            },
        )

    comparison = {
        "holdout": {"snapshot_id": candidate.snapshot_id, "rows": len(holdout)},
        "tolerance": tolerance,
        "candidate": {"version": candidate.version, **candidate_metrics},
        "active": {"version": active.version, **active_metrics},
    }
    drops = [
        f"{name} {candidate_metrics[name]:.4f} < {active_metrics[name]:.4f} - {tolerance}"
        for name in GATED_METRICS
        if candidate_metrics[name] < active_metrics[name] - tolerance - _EPSILON
    ]
    if drops:
        return GateResult(
            passed=False,
            reason=f"{candidate.version} is worse than the active {active.version} beyond the tolerance: "
            + "; ".join(drops),
            comparison=comparison,
        )
    return GateResult(
        passed=True,
        reason=f"{candidate.version} is not worse than the active {active.version} by more than {tolerance} "
        "in top-1 or top-3 accuracy.",
        comparison=comparison,
    )


def _holdout_rows(candidate: ModelVersion) -> list[TrainingRow]:
    rows = load_snapshot_rows(candidate.snapshot)
    _, holdout = time_split(rows, holdout_fraction=settings.MODEL_HOLDOUT_FRACTION)
    return holdout


def _recorded_holdout_metrics(candidate: ModelVersion) -> dict | None:
    """Return the candidate's metrics recorded at training, on this same holdout.

    Training scores a model fitted on the rows before the holdout, so these figures are unbiased;
    the registered bundle was refitted on every row and has seen the holdout.
    """
    recorded = candidate.metrics or {}
    if any(name not in recorded for name in COMPARED_METRICS):
        return None
    return {name: recorded[name] for name in COMPARED_METRICS}


def _score(version: ModelVersion, holdout: list[TrainingRow]) -> dict:
    # NOTE: the active version may have been trained on some of these rows (those already in its
    # own, older snapshot), which can only flatter it: the gate errs towards keeping it.
    bundle = load_version_bundle(version)
    ranked = predict_records(bundle, [row.record for row in holdout], top_k=3)
    metrics = holdout_metrics(true_labels=[row.category for row in holdout], ranked=ranked)
    return {name: metrics[name] for name in COMPARED_METRICS}
