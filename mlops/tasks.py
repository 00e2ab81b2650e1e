import logging

from celery import shared_task
from django.conf import settings

from lookup.models import ExpenseEvent
from lookup.stores.base import LookupStoreUnavailable
from mlops import services, snapshots
from mlops.models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)

# The first model waits for the demo data's events: 200 checks 3 s apart, ten minutes in all.
INITIAL_MODEL_MAX_WAITS = 200
INITIAL_MODEL_WAIT_SECONDS = 3


# Training tasks do not retry: a failed run is recorded as failed, and a retry would find it no
# longer queued. Staff or the schedule start a new run instead.
@shared_task(name="mlops.tasks.train_model", ignore_result=True)
def train_model(run_id: int) -> None:
    services.run_training(run_id=run_id)


@shared_task(
    name="mlops.tasks.create_snapshot",
    ignore_result=True,
    autoretry_for=(LookupStoreUnavailable,),
    max_retries=3,
    retry_backoff=30,
    retry_jitter=True,
)
def create_snapshot() -> None:
    """Export the lookup store to a new dataset snapshot; retried when the store is unreachable.

    A duplicate delivery writes a second snapshot of the same rows, which nothing trains on.
    """
    snapshots.create_snapshot()


@shared_task(name="mlops.tasks.retrain_on_schedule", ignore_result=True)
def retrain_on_schedule() -> None:
    """Train a new version and deploy it only if it passes the promotion gate."""
    services.retrain_on_schedule()


@shared_task(name="mlops.tasks.train_initial_model", bind=True, ignore_result=True, max_retries=INITIAL_MODEL_MAX_WAITS)
def train_initial_model(self) -> None:
    """Train and activate a first model once no event is pending, unless one is active already."""
    if ModelVersion.objects.filter(is_active=True).exists():
        return
    pending = ExpenseEvent.objects.filter(status=ExpenseEvent.Status.PENDING).count()
    if pending and not settings.CELERY_TASK_ALWAYS_EAGER:
        logger.info("Waiting for events before the first training", extra={"pending_events": pending})
        raise self.retry(countdown=INITIAL_MODEL_WAIT_SECONDS)
    if TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists():
        return
    run = TrainingRun.objects.create(activate=True, requested_by="initial set-up")
    services.run_training(run_id=run.pk)
