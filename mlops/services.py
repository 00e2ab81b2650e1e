"""Writes of the model lifecycle: training, registering and activating model versions."""

import datetime
import hashlib
import logging
import secrets

import sklearn
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from lookup.stores import get_lookup_store
from mlops.artefacts import get_artefact_store, package_bundle, sha256_hex
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from mlops.models import ModelVersion, TrainingRun
from mlops.training import TrainingError, TrainingRow, train

logger = logging.getLogger(__name__)

# Fields of a stored expense that the model reads, as named in FEATURE_SCHEMA.
_RECORD_FIELDS = (
    "business_id",
    "supplier",
    "description",
    "currency",
    "payment_method",
    "merchant_category",
    "department",
)


def start_training(*, activate: bool, requested_by: str = "") -> TrainingRun:
    """Create a queued training run and start its task after the transaction commits."""
    from mlops.tasks import train_model

    run = TrainingRun.objects.create(activate=activate, requested_by=requested_by)
    transaction.on_commit(lambda: train_model.delay(run.pk))
    return run


def run_training(*, run_id: int) -> ModelVersion | None:
    """Train a model for a queued run; return the new version, or None if training failed.

    A TrainingError (too little data, one category) marks the run failed with its message; any
    other exception marks it failed and propagates.
    """
    run = TrainingRun.objects.get(pk=run_id)
    if run.status != TrainingRun.Status.QUEUED:
        logger.info("Skipping training run that already started", extra={"training_run": run.pk})
        return run.model_version
    _update_run(run, status=TrainingRun.Status.RUNNING, stage="reading expenses", started_at=timezone.now())

    try:
        rows, reference = snapshot_training_rows()
        _update_run(run, rows_read=len(rows), stage="training")
        result = train(
            rows,
            min_rows=settings.MODEL_MIN_TRAINING_ROWS,
            holdout_fraction=settings.MODEL_HOLDOUT_FRACTION,
            on_stage=lambda stage: _update_run(run, stage=stage),
        )
        _update_run(run, stage="registering")
        version = register_version(result=result, training_data=reference)
    except TrainingError as exc:
        _update_run(run, status=TrainingRun.Status.FAILED, stage="", error=str(exc), finished_at=timezone.now())
        logger.warning("Training failed", extra={"training_run": run.pk, "error": str(exc)})
        return None
    except Exception as exc:
        _update_run(
            run,
            status=TrainingRun.Status.FAILED,
            stage="",
            error=f"{type(exc).__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise

    if run.activate:
        activate_version(version=version.version)
    _update_run(run, status=TrainingRun.Status.SUCCEEDED, stage="", model_version=version, finished_at=timezone.now())
    logger.info("Training succeeded", extra={"training_run": run.pk, "model_version": version.version})
    return version


def snapshot_training_rows() -> tuple[list[TrainingRow], dict]:
    """Read every live expense from the lookup store; return rows and a reference to them."""
    store = get_lookup_store()
    rows = []
    digest = hashlib.sha256()
    for expense in sorted(store.iter_expenses(), key=lambda item: (item.business_id, item.expense_id)):
        record = {name: getattr(expense, name) for name in _RECORD_FIELDS}
        record["amount"] = str(expense.amount) if expense.amount is not None else ""
        rows.append(TrainingRow(record=record, category=expense.category, date=expense.date))
        digest.update(f"{expense.business_id}\x1f{expense.expense_id}\x1f{expense.version}\n".encode())

    dates = [row.date for row in rows if row.date]
    reference = {
        "store": store.name,
        "rows": len(rows),
        "categories": len({row.category for row in rows}),
        "businesses": len({row.record["business_id"] for row in rows}),
        "date_from": min(dates).isoformat() if dates else None,
        "date_to": max(dates).isoformat() if dates else None,
        "sha256": digest.hexdigest(),
    }
    return rows, reference


def register_version(*, result, training_data: dict) -> ModelVersion:
    """Package, store and register a trained model as a new immutable version."""
    version = new_version_id()
    metadata = {
        "version": version,
        "sklearn_version": sklearn.__version__,
        "feature_schema": list(FEATURE_SCHEMA),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "labels": result.bundle["labels"],
        "training_data": training_data,
        "hyper_parameters": result.hyper_parameters,
        "metrics": result.metrics,
    }
    archive = package_bundle(result.bundle, metadata)
    uri = get_artefact_store().save(version=version, archive=archive)
    return ModelVersion.objects.create(
        version=version,
        artefact_uri=uri,
        artefact_sha256=sha256_hex(archive),
        sklearn_version=sklearn.__version__,
        feature_schema=list(FEATURE_SCHEMA),
        labels=result.bundle["labels"],
        training_data=training_data,
        hyper_parameters=result.hyper_parameters,
        metrics=result.metrics,
    )


def activate_version(*, version: str) -> ModelVersion:
    """Make one registered version the active one; in-process predictors switch within seconds."""
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().get(version=version)
        ModelVersion.objects.filter(is_active=True).exclude(pk=target.pk).update(is_active=False)
        if not target.is_active:
            target.is_active = True
            target.activated_at = timezone.now()
            target.save(update_fields=["is_active", "activated_at"])
    logger.info("Activated model version", extra={"model_version": version})
    return target


def new_version_id() -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"v{stamp}-{secrets.token_hex(2)}"


def _update_run(run: TrainingRun, **changes) -> None:
    for name, value in changes.items():
        setattr(run, name, value)
    run.save(update_fields=list(changes))
