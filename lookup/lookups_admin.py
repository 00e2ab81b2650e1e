"""The lookups browser: one business's past expenses in whichever lookup store is configured.

DynamoDB has no Django models, so the browser is a custom admin view that reads through the
LookupStore interface only. Every read is bounded: a page of the business's expenses by
expense id, or the newest expenses of one supplier from the hot-path supplier read.
"""

import collections
import datetime
import logging
from dataclasses import dataclass

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path, reverse

from lookup.domain import Expense
from lookup.models import (
    BUSINESS_ID_MAX_LENGTH,
    EXPENSE_ID_MAX_LENGTH,
    SUPPLIER_MAX_LENGTH,
    ExpenseEvent,
    LookupExpense,
)
from lookup.normalisation import supplier_key
from lookup.stores import LookupStoreError, get_lookup_store

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
# The supplier summary counts this many of the supplier's newest expenses, not all of them.
SUPPLIER_SUMMARY_LIMIT = 500


class LookupsSearchForm(forms.Form):
    business_id = forms.CharField(
        max_length=BUSINESS_ID_MAX_LENGTH, help_text="The exact business id, as the app sends it."
    )
    supplier = forms.CharField(
        max_length=SUPPLIER_MAX_LENGTH,
        required=False,
        help_text="Optional. Matched by supplier key, after the same normalisation as predictions.",
    )
    after = forms.CharField(max_length=EXPENSE_ID_MAX_LENGTH, required=False, widget=forms.HiddenInput)


@dataclass(frozen=True)
class SupplierSummary:
    """Counts per category of one supplier's newest expenses, read with the hot-path query."""

    supplier_key: str
    expenses_read: int
    limit_reached: bool
    categories: list[tuple[str, int]]
    latest_date: datetime.date | None


@admin.register(LookupExpense)
class LookupExpenseAdmin(admin.ModelAdmin):
    list_display = ("business_id", "expense_id", "version", "supplier", "supplier_key", "category", "date", "deleted")
    list_filter = ("deleted",)
    # "=" would compare case-insensitively and list a business whose id differs only in case.
    search_fields = ("business_id__exact", "=expense_id", "supplier_key")
    readonly_fields = [field.name for field in LookupExpense._meta.fields]
    show_full_result_count = False

    def get_urls(self):
        browse = self.admin_site.admin_view(self.browse_view)
        return [path("browse/", browse, name="lookup_lookupexpense_browse"), *super().get_urls()]

    def browse_view(self, request):
        """Show one page of a business's expenses, or one supplier's newest with a summary."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        store = get_lookup_store()
        form = LookupsSearchForm(request.GET or None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Lookups browser",
            "form": form,
            "store_name": store.name,
            "page_size": PAGE_SIZE,
        }
        if form.is_valid():
            try:
                context |= _search_context(store, **form.cleaned_data)
            except LookupStoreError as exc:
                logger.exception("Lookups browser read failed", extra={"business_id": form.cleaned_data["business_id"]})
                context["store_error"] = f"The {store.name} lookup store failed: {exc}. Try again later."
        return TemplateResponse(request, "admin/lookup/lookups_browser.html", context)


def _search_context(store, *, business_id: str, supplier: str, after: str) -> dict:
    if supplier:
        key = supplier_key(supplier)
        # The read that predictions make: one Query on the supplier index, newest first.
        newest = store.similar_expenses(business_id=business_id, supplier_key=key, limit=SUPPLIER_SUMMARY_LIMIT)
        return {
            "searched": True,
            "rows": _rows(newest[:PAGE_SIZE]),
            "summary": _summary(key, newest),
            "next_cursor": None,
        }

    # NOTE: the business's page is in expense id order, not newest first, because neither store
    # has an index on business and date. Newest first needs a DynamoDB index and an SQL index.
    expenses, next_cursor = store.list_expenses(business_id=business_id, after=after or None, limit=PAGE_SIZE)
    return {"searched": True, "rows": _rows(expenses), "next_cursor": next_cursor, "after": after}


def _summary(key: str, expenses: list[Expense]) -> SupplierSummary:
    counts = collections.Counter(expense.category for expense in expenses)
    dates = [expense.date for expense in expenses if expense.date is not None]
    return SupplierSummary(
        supplier_key=key,
        expenses_read=len(expenses),
        limit_reached=len(expenses) >= SUPPLIER_SUMMARY_LIMIT,
        categories=sorted(counts.items(), key=lambda item: (-item[1], item[0])),
        latest_date=max(dates, default=None),
    )


def _rows(expenses: list[Expense]) -> list[dict]:
    """Pair each expense with the admin URL of the event that wrote it, when the inbox still has that event."""
    event_ids = {expense.source_event_id for expense in expenses if expense.source_event_id}
    # One query for the page, whatever its size.
    event_pks = dict(ExpenseEvent.objects.filter(event_id__in=event_ids).values_list("event_id", "pk"))
    return [
        {
            "expense": expense,
            "event_url": (
                reverse("admin:lookup_expenseevent_change", args=[event_pks[expense.source_event_id]])
                if expense.source_event_id in event_pks
                else None
            ),
        }
        for expense in expenses
    ]
