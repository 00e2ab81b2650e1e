"""Revoke API tokens by prefix or by client."""

from django.core.management.base import BaseCommand, CommandError

from categorisation.clients import TOKEN_KEY_PREFIX, ApiTokenNotFound, revoke_api_tokens


class Command(BaseCommand):
    help = (
        "Revoke the API token with the given prefix (such as ec_1a2b3c4d5e6f, as listed in the admin), "
        "or with --client every active token of that client. Requests with a revoked token get a 401."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--prefix",
            help="Prefix of the token to revoke: the key's first part, ec_ and 12 hex digits (a whole key works too).",
        )
        target.add_argument("--client", help="Name of the API client whose active tokens are all revoked.")

    def handle(self, *args, prefix, client, **options):
        if prefix and prefix.startswith(TOKEN_KEY_PREFIX) and prefix.count("_") == 2:
            # A whole key (ec_<prefix hex>_<secret>) was pasted: revoke it by its prefix.
            prefix = prefix.rsplit("_", 1)[0]
        try:
            revoked = revoke_api_tokens(prefix=prefix, client_name=client)
        except ApiTokenNotFound as exc:
            raise CommandError(str(exc)) from exc
        for token_prefix in revoked:
            self.stdout.write(f"Revoked {token_prefix}")
