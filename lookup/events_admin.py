"""Admin for the event inbox: read-only, with filters, the payload, and a retry of failed events."""

import json

from django.contrib import admin, messages
from django.utils.html import format_html
from django.utils.text import Truncator

from lookup import services
from lookup.models import ExpenseEvent

# Characters of last_error shown in the inbox list. The event's page shows all of it.
ERROR_PREVIEW_LENGTH = 80


class BusinessFilter(admin.SimpleListFilter):
    """An exact business id typed into a box, because a list of every business would read the whole inbox."""

    title = "business"
    parameter_name = "business_id"
    template = "admin/lookup/business_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        return queryset.filter(business_id=value) if value else queryset

    def choices(self, changelist):
        # The template's form submits only its own box, so it carries the rest of the query
        # string (other filters, search, ordering) as hidden inputs. filter_params maps each
        # parameter to a list of values in Django 5.0 and later.
        hidden = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name != self.parameter_name
            for value in values
        ]
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "value": self.value() or "",
            "hidden": hidden,
        }


@admin.register(ExpenseEvent)
class ExpenseEventAdmin(admin.ModelAdmin):
    list_display = (
        "event_id",
        "type",
        "business_id",
        "expense_id",
        "version",
        "status",
        "attempts",
        "received_at",
        "error_preview",
    )
    list_filter = ("status", "type", BusinessFilter, ("received_at", admin.DateFieldListFilter))
    # "=" would compare case-insensitively and list a business whose id differs only in case.
    search_fields = ("=event_id", "business_id__exact", "=expense_id")
    search_help_text = "An exact event id, business id or expense id."
    # Newest first by primary key, which follows arrival order and is served by the primary key index.
    ordering = ("-pk",)
    actions = ("retry_failed",)
    fieldsets = (
        (None, {"fields": ("event_id", "type", "status", "attempts", "received_at", "processed_at")}),
        ("Expense", {"fields": ("business_id", "expense_id", "version", "occurred_at")}),
        ("Error", {"fields": ("error",)}),
        ("Payload", {"fields": ("pretty_payload", "payload_sha256")}),
    )
    readonly_fields = (
        *(field.name for field in ExpenseEvent._meta.fields),
        "error",
        "pretty_payload",
    )
    # The inbox grows without bound, so skip the unfiltered COUNT(*) on every list page.
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Events are written by the API and the worker only. Retrying goes through the action.
        return False

    def has_delete_permission(self, request, obj=None):
        # A deleted event could be accepted again as new and applied twice.
        return False

    def has_retry_permission(self, request):
        return request.user.has_perm("lookup.change_expenseevent")

    @admin.display(description="error")
    def error_preview(self, obj):
        return Truncator(obj.last_error).chars(ERROR_PREVIEW_LENGTH)

    @admin.display(description="error of the last attempt")
    def error(self, obj):
        if not obj.last_error:
            return "-"
        return format_html('<pre class="event-error">{}</pre>', obj.last_error)

    @admin.display(description="payload")
    def pretty_payload(self, obj):
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="event-payload">{}</pre>', text)

    @admin.action(description="Retry selected failed events", permissions=("retry",))
    def retry_failed(self, request, queryset):
        selected = list(queryset.values_list("pk", flat=True))
        retried = services.retry_failed_events(event_pks=selected)
        ignored = len(selected) - retried

        if retried:
            noun = "event" if retried == 1 else "events"
            self.message_user(request, f"Queued {retried} failed {noun} for retry.")
        if ignored:
            noun = "event that was" if ignored == 1 else "events that were"
            self.message_user(
                request,
                f"Ignored {ignored} selected {noun} not failed, because only failed events can be retried.",
                level=messages.WARNING,
            )
