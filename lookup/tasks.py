from celery import shared_task
from django.conf import settings

from lookup import services
from lookup.models import ExpenseEvent


@shared_task(name="lookup.tasks.apply_events", ignore_result=True)
def apply_events(event_pks: list[int]) -> None:
    """Apply inbox events; events that hit a transient error are queued again with backoff.

    Attempts are counted on each event row, not by Celery, so a batch that is split across
    retries still parks each event after EVENT_MAX_ATTEMPTS.
    """
    retry = services.apply_events(event_pks=event_pks)
    if not retry:
        return
    attempts = max(ExpenseEvent.objects.filter(pk__in=retry).values_list("attempts", flat=True), default=1)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Eager mode (tests) has no broker to hold a countdown; the sweep or a test retries.
        return
    services.enqueue_events(retry, countdown=services.retry_delay_seconds(attempts))


@shared_task(name="lookup.tasks.sweep_pending_events", ignore_result=True)
def sweep_pending_events() -> None:
    services.sweep_pending_events()
