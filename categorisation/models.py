from django.conf import settings
from django.db import models

TOKEN_PREFIX_MAX_LENGTH = 32


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """An API client's token, stored as the SHA-256 of the key; the key itself is never stored."""

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    # The non-secret start of the key ("ec_" and 12 hex digits), shown in the admin and logs.
    prefix = models.CharField(max_length=TOKEN_PREFIX_MAX_LENGTH, unique=True)
    # Hex SHA-256 of the whole key; authentication looks tokens up by it.
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Updated at most once a minute (authentication.TOKEN_LAST_USED_RESOLUTION), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        ordering = ["client__username", "-created_at"]

    def __str__(self):
        return f"{self.prefix} ({self.client.username})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
