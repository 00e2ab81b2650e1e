import re

from django.core.exceptions import ValidationError
from django.db import models

from lookup.normalisation import normalise_text

BUSINESS_ID_MAX_LENGTH = 100
EXPENSE_ID_MAX_LENGTH = 100
CATEGORY_MAX_LENGTH = 200
SUPPLIER_MAX_LENGTH = 300


class LookupExpense(models.Model):
    """A business's categorised expense in the SQL lookup store; a deleted one is a tombstone."""

    business_id = models.CharField(max_length=BUSINESS_ID_MAX_LENGTH)
    expense_id = models.CharField(max_length=EXPENSE_ID_MAX_LENGTH)
    version = models.BigIntegerField()
    supplier = models.CharField(max_length=SUPPLIER_MAX_LENGTH, blank=True)
    supplier_key = models.CharField(max_length=SUPPLIER_MAX_LENGTH, blank=True)
    category = models.CharField(max_length=CATEGORY_MAX_LENGTH, blank=True)
    # Decimal strings, stored as text so SQLite keeps them exact (its DECIMAL is a float).
    amount = models.CharField(max_length=40, blank=True)
    vat_amount = models.CharField(max_length=40, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    date = models.DateField(null=True, blank=True)
    description = models.TextField(blank=True)
    payment_method = models.CharField(max_length=50, blank=True)
    merchant_category = models.CharField(max_length=200, blank=True)
    department = models.CharField(max_length=300, blank=True)
    deleted = models.BooleanField(default=False)
    source_event_id = models.CharField(max_length=100, blank=True)
    learned_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["business_id", "expense_id"], name="lookup_expense_unique_id"),
        ]
        indexes = [
            models.Index(fields=["business_id", "supplier_key", "deleted"], name="lookup_business_supplier"),
        ]

    def __str__(self):
        return f"{self.business_id}/{self.expense_id} v{self.version}"


class ExpenseEvent(models.Model):
    """An expense event in the inbox: stored once by event_id before it is acknowledged."""

    class Type(models.TextChoices):
        CREATED = "expense.created"
        UPDATED = "expense.updated"
        DELETED = "expense.deleted"

    class Status(models.TextChoices):
        PENDING = "pending"
        APPLIED = "applied"
        # An older version than the store held: acknowledged, changed nothing.
        STALE = "stale"
        FAILED = "failed"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=20, choices=Type.choices)
    occurred_at = models.DateTimeField(null=True, blank=True)
    business_id = models.CharField(max_length=BUSINESS_ID_MAX_LENGTH)
    expense_id = models.CharField(max_length=EXPENSE_ID_MAX_LENGTH)
    version = models.BigIntegerField()
    payload = models.JSONField()
    payload_sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "received_at"], name="event_status_received"),
            models.Index(fields=["business_id", "expense_id"], name="event_business_expense"),
        ]

    def __str__(self):
        return f"{self.event_id} ({self.type}, {self.status})"


class OverrideRule(models.Model):
    """A staff-written rule that assigns a category when an expense's supplier matches."""

    class Match(models.TextChoices):
        EQUALS = "equals"
        CONTAINS = "contains"
        STARTS_WITH = "starts_with"
        REGEX = "regex"

    business_id = models.CharField(
        max_length=BUSINESS_ID_MAX_LENGTH,
        blank=True,
        db_index=True,
        help_text="Leave blank for a global rule that applies to every business.",
    )
    supplier_match = models.CharField(max_length=20, choices=Match.choices, default=Match.CONTAINS)
    supplier_value = models.CharField(
        max_length=SUPPLIER_MAX_LENGTH,
        help_text="Compared after the same case, accent, punctuation and spacing folding as the lookup.",
    )
    category = models.CharField(max_length=CATEGORY_MAX_LENGTH)
    priority = models.IntegerField(default=0, help_text="Higher priority rules are tried first.")
    enabled = models.BooleanField(default=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "id"]

    def __str__(self):
        scope = self.business_id or "global"
        return f"{scope}: supplier {self.supplier_match} {self.supplier_value!r} -> {self.category}"

    def clean(self):
        if self.supplier_match == self.Match.REGEX:
            try:
                re.compile(self.supplier_value)
            except re.error as exc:
                raise ValidationError(
                    {"supplier_value": f"Invalid regular expression {self.supplier_value!r}: {exc}."}
                ) from exc
        elif not normalise_text(self.supplier_value):
            raise ValidationError({"supplier_value": "The value must contain at least one letter or digit."})
