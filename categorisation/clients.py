"""API clients and their tokens.

An API client is a user without a password. It has one or more tokens: rotation adds a new
token while the old one keeps working, and the old one is revoked once the caller has switched.

A token key is "ec_", 12 hex digits, "_" and 64 hex digits (256 random bits). Only the SHA-256 of
the whole key is stored, so a copy of the database cannot be used to call the API. A plain hash
is enough because the key is random rather than chosen by a person: a salt or a slow hash only
defends guessable secrets. An HMAC keyed on SECRET_KEY would add nothing against guessing either,
and would invalidate every token whenever SECRET_KEY is rotated.
"""

import hashlib
import logging
import re
import secrets

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from categorisation.models import ApiToken

logger = logging.getLogger(__name__)

_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")
TOKEN_KEY_PREFIX = "ec_"
_PREFIX_HEX_DIGITS = 12
_SECRET_BYTES = 32
# A new prefix is drawn when one collides with an existing token (48 random bits, so rarely).
_PREFIX_ATTEMPTS = 5


class ApiClientExists(Exception):
    """The client already has an active token and rotation was not requested."""


class ApiTokenNotFound(Exception):
    """No active token matches the prefix or client name given for revocation."""


def hash_token(key: str) -> str:
    """Return the hex SHA-256 of a token key, as stored in ApiToken.token_hash."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_client(*, name: str, rotate: bool = False) -> str:
    """Create an API client (or, with rotate, add a token to an existing one) and return the new key.

    The key is returned only here. With rotate, the client's older tokens stay valid until
    revoke_api_tokens() revokes them. Raises ValueError for an invalid name or a staff account's
    name, and ApiClientExists when the client has an active token and rotate is False.
    """
    if not _CLIENT_NAME.match(name):
        raise ValueError(f"Invalid client name {name!r}; use 1 to 150 letters, digits and _ . @ + -.")

    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.select_for_update().get_or_create(username=name)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        elif user.is_staff or user.is_superuser:
            raise ValueError(f"{name!r} is a staff account; give the API client a name of its own.")
        if user.api_tokens.active().exists() and not rotate:
            raise ApiClientExists(
                f"API client {name!r} already has an active token; pass --rotate to add a second one, "
                "then revoke the old one with revoke_api_token."
            )
        key, token = _create_token(client=user)

    logger.info("API token created", extra={"client": name, "token_prefix": token.prefix})
    return key


def revoke_api_tokens(*, prefix: str | None = None, client_name: str | None = None) -> list[str]:
    """Revoke the active token with this prefix, or every active token of this client.

    Exactly one of prefix and client_name must be given. Returns the revoked tokens' prefixes;
    raises ApiTokenNotFound when no active token matches.
    """
    if (prefix is None) == (client_name is None):
        raise ValueError("Give either a token prefix or a client name.")

    tokens = ApiToken.objects.active()
    tokens = tokens.filter(prefix=prefix) if prefix is not None else tokens.filter(client__username=client_name)
    with transaction.atomic():
        revoked = list(tokens.select_for_update().values_list("prefix", flat=True))
        ApiToken.objects.filter(prefix__in=revoked).update(revoked_at=timezone.now())
    # An update() sends no signal: empty this process's token cache here. (Imported here because
    # authentication imports this module.)
    from categorisation.authentication import clear_token_cache

    clear_token_cache()

    if not revoked:
        target = f"prefix {prefix!r}" if prefix is not None else f"client {client_name!r}"
        raise ApiTokenNotFound(f"No active API token found for {target}.")
    logger.info("API tokens revoked", extra={"client": client_name, "token_prefixes": revoked})
    return revoked


def _create_token(*, client) -> tuple[str, ApiToken]:
    for _ in range(_PREFIX_ATTEMPTS):
        prefix = TOKEN_KEY_PREFIX + secrets.token_hex(_PREFIX_HEX_DIGITS // 2)
        key = f"{prefix}_{secrets.token_hex(_SECRET_BYTES)}"
        try:
            # A savepoint, so a colliding prefix does not break the caller's transaction.
            with transaction.atomic():
                token = ApiToken.objects.create(client=client, prefix=prefix, token_hash=hash_token(key))
        except IntegrityError:
            continue
        return key, token
    raise RuntimeError(f"Could not draw an unused token prefix in {_PREFIX_ATTEMPTS} attempts.")
