"""Create an API client and print its token."""

from django.core.management.base import BaseCommand, CommandError

from categorisation.clients import ApiClientExists, create_api_client


class Command(BaseCommand):
    help = (
        "Create an API client named NAME and print its new token (shown only once; only its hash is "
        "stored). With --rotate, add a token to an existing client; its old tokens keep working until "
        "revoked with revoke_api_token."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="Client name, e.g. the calling application.")
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Add a new token to an existing client, keeping its current tokens valid until revoked.",
        )

    def handle(self, *args, name, rotate, **options):
        try:
            key = create_api_client(name=name, rotate=rotate)
        except (ApiClientExists, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(key)
