"""Admin for override rules: filters, grouped conditions, and a preview before saving.

The "Preview" button posts the form without saving it and shows the past expenses the rule
would match and the enabled rules it overlaps. Saves go through ModelAdmin, so each change is
recorded in the admin history (LogEntry) with its user and time.
"""

import logging

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q

from lookup import selectors
from lookup.models import OverrideRule
from lookup.rules import InvalidRuleError
from lookup.stores import LookupStoreError

logger = logging.getLogger(__name__)

PREVIEW_BUTTON = "_preview"


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("global", "Global"), ("business", "One business")]

    def queryset(self, request, queryset):
        if self.value() == "global":
            return queryset.filter(business_id="")
        if self.value() == "business":
            return queryset.exclude(business_id="")
        return queryset


class ExtraConditionsFilter(admin.SimpleListFilter):
    title = "conditions beyond the supplier"
    parameter_name = "extra_conditions"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "Supplier only")]

    def queryset(self, request, queryset):
        extra = (
            ~Q(description_contains="")
            | ~Q(amount_sign=OverrideRule.Sign.ANY)
            | Q(amount_min__isnull=False)
            | Q(amount_max__isnull=False)
            | ~Q(currency="")
            | ~Q(payment_method="")
            | ~Q(merchant_category_contains="")
        )
        if self.value() == "yes":
            return queryset.filter(extra)
        if self.value() == "no":
            return queryset.exclude(extra)
        return queryset


@admin.register(OverrideRule)
class OverrideRuleAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "scope",
        "supplier_match",
        "supplier_value",
        "other_conditions",
        "combinator",
        "category",
        "priority",
        "enabled",
        "updated_at",
    )
    list_display_links = ("id", "supplier_value")
    list_filter = ("enabled", ScopeFilter, "supplier_match", "combinator", ExtraConditionsFilter, "amount_sign")
    search_fields = (
        # "=" would compare case-insensitively and list a business whose id differs only in case.
        "business_id__exact",
        "supplier_value",
        "description_contains",
        "merchant_category_contains",
        "category",
        "note",
    )
    ordering = ("-priority", "id")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        ("Scope", {"fields": ("business_id",)}),
        ("Supplier", {"fields": ("supplier_match", "supplier_value")}),
        (
            "Other conditions",
            {
                "description": "Optional. Leave a condition blank (or the sign at any) to ignore it.",
                "fields": (
                    "description_contains",
                    ("amount_sign", "amount_min", "amount_max"),
                    "currency",
                    "payment_method",
                    "merchant_category_contains",
                    "combinator",
                ),
            },
        ),
        ("Result", {"fields": ("category", "priority", "enabled", "note")}),
        ("History", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    # How many past expenses a preview reads at most, and how many matches it lists.
    preview_max_scanned = 20_000
    preview_max_examples = 50

    @admin.display(description="scope", ordering="business_id")
    def scope(self, rule: OverrideRule) -> str:
        return rule.business_id or "global"

    @admin.display(description="other conditions")
    def other_conditions(self, rule: OverrideRule) -> str:
        return "; ".join(describe_extra_conditions(rule)) or "-"

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and PREVIEW_BUTTON in request.POST:
            return self._preview_view(request, object_id, form_url, extra_context)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not obj.enabled:
            return
        for other in selectors.conflicting_rules(obj):
            messages.warning(request, conflict_message(other))

    def _preview_view(self, request, object_id, form_url, extra_context):
        """Render the change form with the posted values and a preview, saving nothing."""
        add = object_id is None
        obj = None if add else self.get_object(request, unquote(object_id))
        if not add and obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        allowed = self.has_add_permission(request) if add else self.has_change_permission(request, obj)
        if not allowed:
            raise PermissionDenied

        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))
        form = form_class(request.POST, request.FILES, instance=obj)
        # is_valid() copies the posted values onto form.instance without saving it.
        preview = self._build_preview(form.instance) if form.is_valid() else None

        admin_form = helpers.AdminForm(
            form,
            list(fieldsets),
            self.get_prepopulated_fields(request, obj) if add else {},
            self.get_readonly_fields(request, obj),
            model_admin=self,
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Add' if add else 'Change'} override rule: preview",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "rule_preview": preview,
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj, form_url=form_url)

    def _build_preview(self, rule: OverrideRule) -> dict:
        conflicts = [conflict_message(other) for other in selectors.conflicting_rules(rule)] if rule.enabled else []
        preview = {"conflicts": conflicts, "max_scanned": self.preview_max_scanned, "error": None, "result": None}
        try:
            preview["result"] = selectors.preview_rule(
                rule, max_scanned=self.preview_max_scanned, max_examples=self.preview_max_examples
            )
        except InvalidRuleError as exc:
            preview["error"] = f"The rule cannot be evaluated: {exc.reason}."
        except LookupStoreError:
            logger.exception("Rule preview could not read the lookup store", extra={"business_id": rule.business_id})
            preview["error"] = "The lookup store could not be read, so no past expenses are shown. Try again later."
        return preview


def describe_extra_conditions(rule: OverrideRule) -> list[str]:
    """Return a short phrase for each condition beyond the supplier that the rule sets."""
    phrases = []
    if rule.description_contains:
        phrases.append(f"description contains {rule.description_contains!r}")
    if rule.amount_sign != OverrideRule.Sign.ANY:
        phrases.append(f"amount {rule.amount_sign}")
    if rule.amount_min is not None:
        phrases.append(f"|amount| >= {rule.amount_min}")
    if rule.amount_max is not None:
        phrases.append(f"|amount| <= {rule.amount_max}")
    if rule.currency:
        phrases.append(f"currency {rule.currency}")
    if rule.payment_method:
        phrases.append(f"payment method {rule.payment_method!r}")
    if rule.merchant_category_contains:
        phrases.append(f"merchant category contains {rule.merchant_category_contains!r}")
    return phrases


def conflict_message(other: OverrideRule) -> str:
    scope = f"business {other.business_id}" if other.business_id else "every business"
    return (
        f"Overlaps rule {other.pk} ({scope}, priority {other.priority}): supplier {other.get_supplier_match_display()} "
        f"{other.supplier_value!r} assigns {other.category!r}. The rule with the higher priority wins; "
        "at equal priority a business's own rule runs before a global one, then the older rule."
    )
