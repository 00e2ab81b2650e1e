"""Training of the category model: a time-based holdout, evaluation, then a refit on all rows."""

import collections
import datetime
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string

from mlops.business_models import fit_business_models
from mlops.evaluation import holdout_metrics
from mlops.features import build_pipeline_features, records_frame
from mlops.inference import predict_records

logger = logging.getLogger(__name__)

# One multinomial logistic regression per business (mlops.business_models). It is fitted on log
# loss, so its probabilities are calibrated without a separate calibration split. The saga solver
# with a fixed budget of epochs keeps training on all payments rows within a minute; more epochs
# gained little accuracy (docs/models.md, "Training time").
DEFAULT_HYPER_PARAMETERS = {
    "classifier": "LogisticRegression(multinomial, saga) per business",
    "C": 10.0,
    "max_iter": 7,
    "tol": 0.001,
    "min_df": 2,
    # saga visits rows in a random order; a fixed seed makes a retrain on the same rows repeatable.
    "random_state": 0,
    "holdout_fraction": 0.2,
    "refit_on_all_rows": True,
}
# Categories ranked per holdout row, as many as the prediction service requests from the model
# (categorisation.policy.MODEL_CANDIDATES), so the holdout analysis sees what serving sees.
HOLDOUT_CANDIDATES = 10
# A category needs this many examples to be learnable; training needs two such categories.
MIN_EXAMPLES_PER_CATEGORY = 2


class TrainingError(Exception):
    """Training cannot produce a useful model from this data, and the message states why."""


@dataclass(frozen=True)
class TrainingRow:
    record: dict
    category: str
    date: datetime.date | None


@dataclass
class TrainingResult:
    bundle: dict
    metrics: dict
    hyper_parameters: dict


def train(
    rows: list[TrainingRow],
    *,
    min_rows: int,
    holdout_fraction: float,
    on_stage: Callable[[str], None] = lambda stage: None,
) -> TrainingResult:
    """Fit, evaluate on the latest rows of each business, then refit on every row.

    The refit starts as soon as the holdout is ranked and runs in a thread beside the holdout
    analysis: the analysis is Python that holds the GIL, the solver mostly releases it, so the
    two share the cores instead of taking turns. The stage "fitting on all rows" is then the wait
    for the refit to finish.

    Raises TrainingError with a message for staff on too little data or too few categories.
    """
    params = DEFAULT_HYPER_PARAMETERS | {"holdout_fraction": holdout_fraction}
    if len(rows) < min_rows:
        raise TrainingError(f"Not enough data: {len(rows)} expenses, at least {min_rows} are needed.")
    if len({row.category for row in rows}) < 2:
        raise TrainingError("Not enough categories: every expense has the same category, so there is nothing to learn.")

    counts = collections.Counter(row.category for row in rows)
    if sum(count >= MIN_EXAMPLES_PER_CATEGORY for count in counts.values()) < 2:
        raise TrainingError(
            f"Not enough categories: fewer than two categories have {MIN_EXAMPLES_PER_CATEGORY} or more "
            "examples; add more categorised expenses."
        )

    train_rows, holdout_rows = time_split(rows, holdout_fraction=holdout_fraction)
    metrics = {"training_rows": len(train_rows)}
    with ThreadPoolExecutor(max_workers=1) as background:
        refit = None
        if len({row.category for row in train_rows}) >= 2 and holdout_rows:
            on_stage("fitting on the training split")
            bundle = _fit(train_rows, params)
            on_stage("evaluating on the holdout")
            ranked = predict_records(bundle, [row.record for row in holdout_rows], top_k=HOLDOUT_CANDIDATES)
            metrics |= holdout_metrics(true_labels=[row.category for row in holdout_rows], ranked=ranked)
            refit = background.submit(_fit, rows, params)
            analysis = _holdout_analysis()
            if analysis is not None:
                on_stage("calibrating the combined confidence")
                metrics |= analysis(train_rows, holdout_rows, ranked)

        on_stage("fitting on all rows")
        bundle = refit.result() if refit is not None else _fit(rows, params)
    metrics["final_training_rows"] = len(rows)
    metrics["categories"] = len(counts)
    # The model suggests only a known business's categories, so a smoke test needs a known business.
    business_rows = collections.Counter(row.record.get("business_id", "") for row in rows)
    metrics["largest_business"] = business_rows.most_common(1)[0][0]
    return TrainingResult(bundle=bundle, metrics=metrics, hyper_parameters=params)


def _holdout_analysis() -> Callable | None:
    """Return the function named by MODEL_HOLDOUT_ANALYSIS, which adds metrics from the holdout.

    It is a setting, not an import, because the analysis replays the prediction policy, which
    lives in the categorisation app above this one.
    """
    path = getattr(settings, "MODEL_HOLDOUT_ANALYSIS", "") if settings.configured else ""
    return import_string(path) if path else None


def time_split(rows: list[TrainingRow], *, holdout_fraction: float) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """Split each business's rows by date: the latest holdout_fraction is held out."""
    by_business = collections.defaultdict(list)
    for row in rows:
        by_business[row.record.get("business_id", "")].append(row)

    train_rows, holdout_rows = [], []
    for business_rows in by_business.values():
        business_rows.sort(key=lambda row: row.date or datetime.date.min)
        held = int(len(business_rows) * holdout_fraction)
        cut = len(business_rows) - held
        train_rows.extend(business_rows[:cut])
        holdout_rows.extend(business_rows[cut:])
    return train_rows, holdout_rows


def _fit(rows: list[TrainingRow], params: dict) -> dict:
    features = build_pipeline_features(min_df=params["min_df"])
    matrix = features.fit_transform(records_frame([row.record for row in rows])).tocsr().astype(np.float32)
    labels = sorted({row.category for row in rows})
    index = {label: position for position, label in enumerate(labels)}
    business_models, shared_model = fit_business_models(
        matrix,
        np.array([index[row.category] for row in rows], dtype=np.int32),
        [row.record.get("business_id") or "" for row in rows],
        params=params,
        threads=_training_threads(),
    )
    return {
        "features": features,
        "labels": labels,
        "business_labels": {business: model.labels.tolist() for business, model in business_models.items()},
        "business_models": business_models,
        "shared_model": shared_model,
    }


def _training_threads() -> int:
    return getattr(settings, "MODEL_TRAINING_THREADS", 1) if settings.configured else 1
