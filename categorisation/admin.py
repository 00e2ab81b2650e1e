"""Admin pages of the categorisation app: "Try a prediction" and the API tokens list.

"Try a prediction" is not a model page, so it is added as a URL of the default site itself,
wrapped in admin_view for the login and staff checks, and linked from the index through the
site's index template.
"""

import logging
from functools import partial

from django.contrib import admin, messages
from django.urls import path

from categorisation.admin_views import try_prediction_view
from categorisation.clients import ApiTokenNotFound, revoke_api_tokens
from categorisation.models import ApiToken

logger = logging.getLogger(__name__)

_site_urls = admin.site.get_urls


def _get_urls():
    view = admin.site.admin_view(partial(try_prediction_view, admin_site=admin.site))
    return [path("categorisation/try-prediction/", view, name="categorisation_try_prediction"), *_site_urls()]


admin.site.get_urls = _get_urls
admin.site.index_template = "admin/categorisation/index.html"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens, read-only, for superusers only; the one change allowed is revoking.

    Tokens are created with the create_api_token command, so a key is shown only to whoever runs
    it. Group permissions do not open this page: a token lets its holder call the API as a
    client, so support and ML staff neither see the list nor revoke. The stored hash is not shown.
    """

    list_display = ("prefix", "client", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("prefix", "client__username")
    fields = ("prefix", "client", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoked tokens stay listed, with when they were last used, as the audit trail.
        return False

    def has_revoke_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    @admin.action(description="Revoke selected API tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = []
        for token in queryset.filter(revoked_at__isnull=True).select_related("client"):
            try:
                revoke_api_tokens(prefix=token.prefix)
            except ApiTokenNotFound:
                # Revoked by someone else since the page was loaded.
                continue
            self.log_change(request, token, "Revoked")
            revoked.append(token.prefix)

        if not revoked:
            self.message_user(request, "No active token was selected; nothing was revoked.", messages.WARNING)
            return
        logger.info("API tokens revoked in the admin", extra={"token_prefixes": revoked, "user": request.user.username})
        self.message_user(request, f"Revoked {len(revoked)} API token(s): {', '.join(revoked)}.", messages.SUCCESS)
