"""Admin for archived categories: support staff see, add and remove a business's archived categories.

Access follows the model permissions, as for override rules: the support group has view, add
and delete on ArchivedCategory. There is nothing to change on a row, so restoring a category is
deleting its row, and each add and delete is recorded in the admin history (LogEntry).
"""

from django.contrib import admin

from lookup.models import ArchivedCategory


@admin.register(ArchivedCategory)
class ArchivedCategoryAdmin(admin.ModelAdmin):
    list_display = ("business_id", "category", "archived_at")
    # "business_id__exact", not "=": "=" compares case-insensitively and would list a business
    # whose id differs only in case.
    search_fields = ("business_id__exact", "category")
    search_help_text = "Enter an exact business id, or part of a category."
    list_filter = ("archived_at",)
    ordering = ("business_id", "category")
    readonly_fields = ("archived_at",)
    fields = ("business_id", "category", "archived_at")

    def has_change_permission(self, request, obj=None):
        # An existing row is shown read-only: edit one by deleting it and adding another.
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)
