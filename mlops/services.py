"""Writes of the model lifecycle: training, registering and activating model versions."""

import datetime
import logging
import secrets

import sklearn
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlops.artefacts import get_artefact_store, package_bundle, sha256_hex
from mlops.features import FEATURE_SCHEMA, FEATURE_SCHEMA_VERSION
from mlops.models import DatasetSnapshot, ModelVersion, TrainingRun
from mlops.promotion import check_promotion_gate
from mlops.snapshots import SnapshotError, create_snapshot, load_snapshot_rows, training_data_reference
from mlops.training import TrainingError, train

logger = logging.getLogger(__name__)

# requested_by of the training runs and deployments that the periodic schedule starts.
SCHEDULED_RETRAINING_USER = "scheduled retraining"


def start_training(*, activate: bool, requested_by: str = "") -> TrainingRun:
    """Create a queued training run and start its task after the transaction commits."""
    from mlops.tasks import train_model

    run = TrainingRun.objects.create(activate=activate, requested_by=requested_by)
    transaction.on_commit(lambda: train_model.delay(run.pk))
    return run


def run_training(*, run_id: int) -> ModelVersion | None:
    """Snapshot the lookup store, train on the snapshot and register a version; None if training failed.

    The run's stage and rows_read show progress while it runs. A TrainingError (too little data,
    one category) or an unreadable snapshot marks the run failed with its message, and the active
    version keeps serving. Any other exception marks the run failed and propagates.
    """
    run = TrainingRun.objects.get(pk=run_id)
    if run.status != TrainingRun.Status.QUEUED:
        logger.info("Skipping training run that already started", extra={"training_run": run.pk})
        return run.model_version
    _update_run(run, status=TrainingRun.Status.RUNNING, stage="reading expenses", started_at=timezone.now())

    try:
        snapshot = create_snapshot(on_rows_read=lambda count: _update_run(run, rows_read=count))
        _update_run(run, stage="snapshot written", snapshot=snapshot, rows_read=snapshot.row_count)
        # Training reads the file back, so it uses exactly the rows and row order that the
        # promotion gate later rebuilds its holdout from.
        rows = load_snapshot_rows(snapshot)
        result = train(
            rows,
            min_rows=settings.MODEL_MIN_TRAINING_ROWS,
            holdout_fraction=settings.MODEL_HOLDOUT_FRACTION,
            on_stage=lambda stage: _update_run(run, stage=stage),
        )
        _update_run(run, stage="registering")
        version = register_version(result=result, training_data=training_data_reference(snapshot), snapshot=snapshot)
    except (TrainingError, SnapshotError) as exc:
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


def retrain_on_schedule() -> ModelVersion | None:
    """Train a new version and deploy it if it passes the promotion gate; return the deployed version.

    Returns None, and deploys nothing, when another run is queued or running, when training fails,
    or when the gate fails: a scheduled run never overrides the gate.
    """
    if TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists():
        logger.info("Skipping scheduled retraining while another training run is queued or running")
        return None
    run = TrainingRun.objects.create(activate=False, requested_by=SCHEDULED_RETRAINING_USER)
    candidate = run_training(run_id=run.pk)
    if candidate is None:
        return None

    # Imported when used: deployment activates versions through this module, so importing it at
    # the top would be circular.
    from mlops.deployment import DeploymentError, deploy_version

    gate = check_promotion_gate(candidate=candidate, active=ModelVersion.objects.filter(is_active=True).first())
    if not gate.passed:
        logger.warning(
            "Scheduled model not deployed: the promotion gate failed",
            extra={"training_run": run.pk, "model_version": candidate.version, "reason": gate.reason},
        )
        return None
    try:
        deploy_version(version=candidate.version, requested_by=SCHEDULED_RETRAINING_USER)
    except DeploymentError as exc:
        # The Deployment row records the failed step; the previous version keeps serving.
        logger.error(
            "Scheduled model deployment failed",
            extra={"training_run": run.pk, "model_version": candidate.version, "error": str(exc)},
        )
        return None
    logger.info("Scheduled model deployed", extra={"training_run": run.pk, "model_version": candidate.version})
    return candidate


def register_version(*, result, training_data: dict, snapshot: DatasetSnapshot | None = None) -> ModelVersion:
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
        snapshot=snapshot,
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
