"""The Celery application and the periodic schedule."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("categorisation")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def create_filesystem_broker_folders(sender, **kwargs):
    """kombu's filesystem transport needs its folders to exist before the first message."""
    from pathlib import Path

    for key in ("data_folder_in", "processed_folder", "control_folder"):
        folder = sender.conf.broker_transport_options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


@app.on_after_finalize.connect
def register_periodic_tasks(sender, **kwargs):
    from django.conf import settings

    sender.add_periodic_task(
        settings.EVENT_SWEEP_INTERVAL_SECONDS,
        sender.signature("lookup.tasks.sweep_pending_events"),
        name="re-enqueue pending events",
    )
    retraining = retraining_schedule(settings.RETRAIN_SCHEDULE)
    if retraining is not None:
        sender.add_periodic_task(
            retraining,
            sender.signature("mlops.tasks.retrain_on_schedule"),
            name="scheduled retraining",
        )


def retraining_schedule(name: str) -> crontab | None:
    """Return the crontab of a RETRAIN_SCHEDULE value, or None for "off".

    Both run at 02:00 UTC, which is Celery's default time zone; "weekly" runs on Mondays.
    """
    if name == "daily":
        return crontab(minute=0, hour=2)
    if name == "weekly":
        return crontab(minute=0, hour=2, day_of_week="mon")
    return None
