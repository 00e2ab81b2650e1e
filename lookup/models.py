import re
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
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
    """A staff-written rule that assigns a category to expenses that meet its conditions."""

    class Match(models.TextChoices):
        EQUALS = "equals"
        CONTAINS = "contains"
        STARTS_WITH = "starts_with"
        REGEX = "regex"

    class Combinator(models.TextChoices):
        ALL = "all", "All conditions match"
        ANY = "any", "Any condition matches"

    class Sign(models.TextChoices):
        ANY = "any", "Any sign"
        POSITIVE = "positive", "Positive (a purchase)"
        NEGATIVE = "negative", "Negative (a refund)"

    business_id = models.CharField(
        max_length=BUSINESS_ID_MAX_LENGTH,
        blank=True,
        db_index=True,
        help_text="Leave blank for a global rule that applies to every business.",
    )
    supplier_match = models.CharField(max_length=20, choices=Match.choices, default=Match.CONTAINS)
    supplier_value = models.CharField(
        max_length=SUPPLIER_MAX_LENGTH,
        help_text="Compared after the same case, accent, punctuation and spacing folding as the lookup. "
        "A regular expression is matched case-insensitively against the supplier with its punctuation kept.",
    )
    description_contains = models.CharField(
        max_length=SUPPLIER_MAX_LENGTH,
        blank=True,
        help_text="Optional. Text the description must contain, folded like the supplier.",
    )
    amount_sign = models.CharField(max_length=10, choices=Sign.choices, default=Sign.ANY)
    # SQLite stores a decimal column as REAL, which is exact only up to 15 significant digits.
    amount_min = models.DecimalField(
        max_digits=15,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Optional. The smallest absolute amount that matches, inclusive, in the expense's currency.",
    )
    amount_max = models.DecimalField(
        max_digits=15,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Optional. The largest absolute amount that matches, inclusive, in the expense's currency.",
    )
    currency = models.CharField(
        max_length=3,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z]{3}$", "Enter a three-letter ISO 4217 code, such as GBP.")],
        help_text="Optional. The ISO 4217 code the expense must be in, such as GBP.",
    )
    payment_method = models.CharField(
        max_length=50,
        blank=True,
        help_text="Optional. The payment method the expense must have, such as card, compared after folding.",
    )
    merchant_category_contains = models.CharField(
        max_length=200,
        blank=True,
        help_text="Optional. Text the card network's merchant category must contain, folded like the supplier.",
    )
    combinator = models.CharField(
        max_length=3,
        choices=Combinator.choices,
        default=Combinator.ALL,
        help_text="Whether every condition that is set must match, or at least one.",
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
        errors = {}
        if self.supplier_match == self.Match.REGEX:
            try:
                re.compile(self.supplier_value)
            except re.error as exc:
                errors["supplier_value"] = f"Invalid regular expression {self.supplier_value!r}: {exc}."
        elif not normalise_text(self.supplier_value):
            errors["supplier_value"] = "The value must contain at least one letter or digit."

        for field in ("description_contains", "payment_method", "merchant_category_contains"):
            value = getattr(self, field)
            if value and not normalise_text(value):
                errors[field] = f"The value {value!r} must contain at least one letter or digit, or be left blank."

        if self.amount_min is not None and self.amount_max is not None and self.amount_min > self.amount_max:
            errors["amount_max"] = (
                f"The maximum amount {self.amount_max} is below the minimum {self.amount_min}; "
                "enter a maximum of at least the minimum."
            )
        self.currency = self.currency.upper()

        if errors:
            raise ValidationError(errors)


class ArchivedCategory(models.Model):
    """A category a business has archived: predictions for that business never suggest it."""

    # The unique constraint's index also serves lookups by business_id alone.
    business_id = models.CharField(max_length=BUSINESS_ID_MAX_LENGTH)
    category = models.CharField(max_length=CATEGORY_MAX_LENGTH)
    archived_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "archived categories"
        ordering = ["business_id", "category"]
        constraints = [
            models.UniqueConstraint(fields=["business_id", "category"], name="lookup_archived_category_unique"),
        ]

    def __str__(self):
        return f"{self.business_id}: {self.category}"
