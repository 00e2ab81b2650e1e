from django.contrib import admin

from lookup.models import ExpenseEvent, LookupExpense, OverrideRule


@admin.register(OverrideRule)
class OverrideRuleAdmin(admin.ModelAdmin):
    list_display = ("id", "business_id", "supplier_match", "supplier_value", "category", "priority", "enabled")
    list_filter = ("enabled", "supplier_match")
    search_fields = ("business_id", "supplier_value", "category")


@admin.register(ExpenseEvent)
class ExpenseEventAdmin(admin.ModelAdmin):
    list_display = ("event_id", "type", "business_id", "expense_id", "version", "status", "attempts", "received_at")
    list_filter = ("status", "type")
    search_fields = ("=event_id", "=business_id", "=expense_id")
    readonly_fields = [field.name for field in ExpenseEvent._meta.fields]
    show_full_result_count = False


@admin.register(LookupExpense)
class LookupExpenseAdmin(admin.ModelAdmin):
    list_display = ("business_id", "expense_id", "version", "supplier", "supplier_key", "category", "date", "deleted")
    list_filter = ("deleted",)
    search_fields = ("=business_id", "=expense_id", "supplier_key")
    readonly_fields = [field.name for field in LookupExpense._meta.fields]
    show_full_result_count = False
