"""The Celery application and the periodic schedule."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("categorisation")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def create_filesystem_broker_folders(sender, **kwargs):
    """kombu's filesystem transport needs its folders to exist before the first message."""
    from pathlib import Path

    for key in ("data_folder_in", "processed_folder"):
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
