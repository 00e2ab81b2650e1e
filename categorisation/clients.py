"""API clients: a user without a password, holding one DRF token."""

import re

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")


class ApiClientExists(Exception):
    """The client already has a token and rotation was not requested."""


def create_api_client(*, name: str, rotate: bool = False) -> str:
    """Create (or, with rotate, re-key) an API client; return its new token key."""
    if not _CLIENT_NAME.match(name):
        raise ValueError(f"Invalid client name {name!r}; use 1 to 150 letters, digits and _ . @ + -.")
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(username=name)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        existing = Token.objects.filter(user=user)
        if existing.exists():
            if not rotate:
                raise ApiClientExists(f"API client {name!r} already has a token; pass --rotate to replace it.")
            existing.delete()
        return Token.objects.create(user=user).key
