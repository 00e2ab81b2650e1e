"""Train a model on the lookup store's expenses and register it as a new version."""

from django.core.management.base import BaseCommand, CommandError

from mlops import services
from mlops.models import TrainingRun


class Command(BaseCommand):
    help = (
        "Train a model in this process on every expense in the lookup store, register the version "
        "and print its id alone on the last line. --activate also makes it the active version."
    )

    def add_arguments(self, parser):
        parser.add_argument("--activate", action="store_true", help="Activate the new version after training.")

    def handle(self, *args, activate, **options):
        run = TrainingRun.objects.create(activate=activate, requested_by="manage.py train_model")
        version = services.run_training(run_id=run.pk)
        if version is None:
            run.refresh_from_db()
            raise CommandError(f"Training failed: {run.error}")
        metrics = version.metrics
        self.stderr.write(
            f"Trained on {version.training_data['rows']} expenses: holdout top-1 "
            f"{metrics.get('top1_accuracy')}, top-3 {metrics.get('top3_accuracy')}"
            + (" (activated)" if activate else "")
        )
        self.stdout.write(version.version)
