"""Export the lookup store's expenses to a new training dataset snapshot."""

from django.core.management.base import BaseCommand, CommandError

from lookup.stores.base import LookupStoreUnavailable
from mlops.snapshots import create_snapshot


class Command(BaseCommand):
    help = (
        "Export every live expense in the lookup store to a new read-only, checksummed snapshot file, "
        "register it and print its id alone on the last line."
    )

    def handle(self, *args, **options):
        try:
            snapshot = create_snapshot()
        except LookupStoreUnavailable as exc:
            raise CommandError(f"Snapshot failed: {exc}") from exc
        self.stderr.write(
            f"Snapshot of {snapshot.row_count} expenses, {snapshot.category_count} categories and "
            f"{snapshot.business_count} businesses from {snapshot.date_from} to {snapshot.date_to} "
            f"(SHA-256 {snapshot.sha256}) at {snapshot.uri}"
        )
        self.stdout.write(str(snapshot.pk))
