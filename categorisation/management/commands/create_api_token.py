"""Create an API client and print its token."""

from django.core.management.base import BaseCommand, CommandError

from categorisation.clients import ApiClientExists, create_api_client


class Command(BaseCommand):
    help = "Create an API client named NAME and print its new token (shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Client name, e.g. the calling application.")
        parser.add_argument("--rotate", action="store_true", help="Replace the token of an existing client.")

    def handle(self, *args, name, rotate, **options):
        try:
            key = create_api_client(name=name, rotate=rotate)
        except ApiClientExists as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(key)
