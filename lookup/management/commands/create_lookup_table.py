"""Create the DynamoDB lookup table and its index, or confirm they exist, and wait until ACTIVE."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from lookup.aws import dynamodb_client
from lookup.stores import LookupStoreError
from lookup.stores.dynamodb_table import ensure_table


class Command(BaseCommand):
    help = (
        "Create the DynamoDB lookup table (on-demand capacity, with the by_supplier index) unless it "
        "exists, then wait until the table and index are ACTIVE. Safe to run again: an existing table "
        "with the expected key schema is left as it is."
    )

    def add_arguments(self, parser):
        parser.add_argument("--table", default=settings.DYNAMODB_TABLE, help="Table name (default: DYNAMODB_TABLE).")
        parser.add_argument("--region", default=settings.AWS_REGION, help="AWS region (default: AWS_REGION).")
        parser.add_argument(
            "--timeout", type=float, default=300.0, help="Seconds to wait for ACTIVE before failing (default 300)."
        )

    def handle(self, *args, table, region, timeout, **options):
        if timeout <= 0:
            raise CommandError(f"--timeout must be a positive number of seconds, got {timeout}.")
        try:
            created = ensure_table(dynamodb_client(region), table, timeout_seconds=timeout)
        except LookupStoreError as exc:
            raise CommandError(str(exc)) from exc
        action = "Created" if created else "Found existing"
        self.stdout.write(f"{action} DynamoDB table {table} in {region}; it and its index are ACTIVE.")
