"""DRF authentication with the hashed API tokens of categorisation.models.ApiToken.

Clients send `Authorization: Token <key>` (as with DRF's TokenAuthentication, so existing callers
keep working) or `Authorization: Bearer <key>`. A missing, unknown or revoked token gets a JSON
401 from the API's exception handler. The key is never logged; logs name a token by its prefix.
"""

import datetime
import hmac
import logging
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from categorisation.clients import hash_token
from categorisation.models import ApiToken
from config.process_cache import ProcessCache

logger = logging.getLogger(__name__)

AUTHORIZATION_SCHEMES = (b"token", b"bearer")
# A new key is 80 characters; anything much longer is not a key and is not hashed.
MAX_KEY_LENGTH = 200
# last_used_at is written at most this often per token, so not every request writes a row.
TOKEN_LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)
# The maximum number of tokens one process caches. Past it, the cache starts again empty.
TOKEN_CACHE_MAX_ENTRIES = 10_000
# A client that keeps sending a revoked token is logged once per token per interval and process.
_REVOKED_LOG_INTERVAL_SECONDS = 60.0
_HOW_TO_AUTHENTICATE = "Send 'Authorization: Token <key>' with a key from the create_api_token command."


class ApiTokenAuthentication(BaseAuthentication):
    """Authenticate a request by its API token; request.user is the client and request.auth the ApiToken."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in AUTHORIZATION_SCHEMES:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected a scheme and one key separated by a space. "
                + _HOW_TO_AUTHENTICATE
            )
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(f"Invalid API token. {_HOW_TO_AUTHENTICATE}") from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str):
        token = _find_token(key)
        if token is None:
            raise exceptions.AuthenticationFailed(f"Invalid API token. {_HOW_TO_AUTHENTICATE}")
        if token.revoked_at is not None:
            _log_revoked_use(token)
            raise exceptions.AuthenticationFailed(
                "This API token has been revoked; use a newer token of the client or create one with create_api_token."
            )
        if not token.client.is_active:
            raise exceptions.AuthenticationFailed("The API client of this token is disabled.")

        _record_use(token)
        return token.client, token

    def authenticate_header(self, request):
        # A WWW-Authenticate value makes DRF return 401 rather than 403 when authentication fails.
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of ApiTokenAuthentication, found by drf-spectacular on import."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API token, sent as "Token <key>" or "Bearer <key>".',
        }


def _find_token(key: str) -> ApiToken | None:
    """Return the token with this key and its client, or None.

    A token found is kept for API_TOKEN_CACHE_SECONDS in this process, so most requests make no
    query before the prediction. An unknown key is looked up every time. Revoking a token, or
    saving or deleting a token or a client, empties this process's cache at once, and other
    processes see the change within API_TOKEN_CACHE_SECONDS.
    """
    if len(key) > MAX_KEY_LENGTH:
        return None
    digest = hash_token(key)
    now = time.monotonic()
    generation, cached = _token_cache.lookup([digest], now=now)
    if digest in cached:
        return cached[digest]

    token = ApiToken.objects.select_related("client").filter(token_hash=digest).first()
    # The lookup matched on the digest already. The constant-time comparison also rejects a match
    # from a database whose string comparison ignores case or trailing spaces.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if settings.API_TOKEN_CACHE_SECONDS > 0:
        _token_cache.put(
            {digest: token},
            expires_at=now + settings.API_TOKEN_CACHE_SECONDS,
            generation=generation,
            max_entries=TOKEN_CACHE_MAX_ENTRIES,
        )
    return token


# Per token digest: the token with its client.
_token_cache = ProcessCache()


def clear_token_cache(**_signal_arguments) -> None:
    """Empty this process's cache of API tokens (a signal receiver too)."""
    _token_cache.clear()


def connect_cache_signals() -> None:
    """Empty the token cache whenever a token or a user is saved or deleted."""
    for model in (ApiToken, get_user_model()):
        name = model.__name__
        post_save.connect(_clear_now_and_on_commit, sender=model, dispatch_uid=f"clear-token-cache-save-{name}")
        post_delete.connect(_clear_now_and_on_commit, sender=model, dispatch_uid=f"clear-token-cache-delete-{name}")


def _clear_now_and_on_commit(**_signal_arguments) -> None:
    # Inside a transaction (the admin's change page), another thread could cache the row as it was
    # before the commit, so the cache is emptied again once the change is committed.
    clear_token_cache()
    transaction.on_commit(clear_token_cache)


def _record_use(token: ApiToken) -> None:
    now = timezone.now()
    stale_before = now - TOKEN_LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale_before:
        return
    # The condition makes concurrent requests in other processes write once between them.
    ApiToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before), pk=token.pk).update(
        last_used_at=now
    )
    # The cached instance too, so the next requests within the minute do not write again.
    token.last_used_at = now


_revoked_logged_at: dict[str, float] = {}
_revoked_log_lock = threading.Lock()


def _log_revoked_use(token: ApiToken) -> None:
    now = time.monotonic()
    with _revoked_log_lock:
        if now - _revoked_logged_at.get(token.prefix, float("-inf")) < _REVOKED_LOG_INTERVAL_SECONDS:
            return
        _revoked_logged_at[token.prefix] = now
    logger.warning(
        "Revoked API token used",
        extra={"client": token.client.username, "token_prefix": token.prefix, "revoked_at": token.revoked_at},
    )
