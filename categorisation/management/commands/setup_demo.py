"""First-run set-up for `make run`: accounts, demo data and the first model."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from categorisation.clients import create_api_client
from categorisation.models import ApiToken
from lookup.models import ExpenseEvent
from lookup.stores import get_lookup_store
from mlops.models import ModelVersion
from mlops.tasks import train_initial_model

DEMO_CLIENT = "demo"
ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Create the DynamoDB lookup table when LOOKUP_STORE=dynamodb and it is missing, the admin user "
        "and the demo API token if missing (printing their secrets once), import DATA if the lookup "
        "is empty, and queue the first training if no model is active."
    )

    def add_arguments(self, parser):
        parser.add_argument("--data", required=True, help="CSV of categorised expenses to load into an empty lookup.")

    def handle(self, *args, data, **options):
        if settings.LOOKUP_STORE == "dynamodb":
            call_command("create_lookup_table", stdout=self.stdout)
        self._create_admin()
        self._create_demo_token()

        if get_lookup_store().count_expenses() == 0 and not ExpenseEvent.objects.exists():
            self.stdout.write(f"Loading {data} into the empty lookup...")
            call_command("import_expenses", data, stdout=self.stdout, stderr=self.stderr)
        if not ModelVersion.objects.filter(is_active=True).exists():
            self.stdout.write("No active model: the worker will train one once the events are applied.")
            train_initial_model.delay()

    def _create_admin(self):
        users = get_user_model().objects
        if users.filter(username=ADMIN_USERNAME).exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=ADMIN_USERNAME, email="", password=password)
        self.stdout.write(self.style.SUCCESS(f"Admin user: {ADMIN_USERNAME} / {password}  (shown once)"))

    def _create_demo_token(self):
        if ApiToken.objects.active().filter(client__username=DEMO_CLIENT).exists():
            return
        key = create_api_client(name=DEMO_CLIENT)
        self.stdout.write(self.style.SUCCESS(f"Demo API token: {key}  (shown once)"))
        self.stdout.write(f"  export TOKEN={key}")
