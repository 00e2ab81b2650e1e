"""Strict serializer fields for expenses, shared by the events and prediction APIs.

Each field rejects with a message that says what is accepted, and the API exception handler
adds the field path and the rejected value.
"""

import datetime
import re
import threading
from decimal import Decimal, InvalidOperation
from functools import cached_property

import pycountry
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

AMOUNT_MAX_INTEGER_DIGITS = 12
AMOUNT_MAX_FRACTION_DIGITS = 15
AMOUNT_FORMAT_HELP = (
    "a decimal number with '.' as the decimal separator, an optional leading '-', no thousands "
    "separators, currency symbols or exponent, at most 12 digits before the point and 15 after, "
    "e.g. 1234.56 or -42.50"
)
# [0-9], not \d, which also matches other scripts' digits ("١٢٣").
_AMOUNT_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# The schema's pattern also carries the digit limits that to_internal_value checks separately.
_AMOUNT_SCHEMA_PATTERN = rf"^-?\d{{1,{AMOUNT_MAX_INTEGER_DIGITS}}}(\.\d{{1,{AMOUNT_MAX_FRACTION_DIGITS}}})?$"

DATE_FORMAT_HELP = "an ISO 8601 date YYYY-MM-DD, or a date-time such as 2024-11-13T07:40:00+10:00"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$", re.ASCII)
# Expense dates outside this range are typing errors, and far-off dates break the lookup's recency weight.
EXPENSE_DATE_RANGE = (datetime.date(1900, 1, 1), datetime.date(2199, 12, 31))

IDENTIFIER_HELP = "1 to 100 characters: letters, digits and _ . : @ / -, starting with a letter or digit"
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,99}$")

CURRENCY_CODES = frozenset(currency.alpha_3 for currency in pycountry.currencies)
# get_value methods that return data.get(field_name, empty) for a plain dict (no HTML form input).
_PLAIN_GET_VALUE = (serializers.Field.get_value, serializers.Serializer.get_value, serializers.ListSerializer.get_value)


_reused_serializers = threading.local()


def validated_data(serializer_class: type[serializers.Serializer], data) -> dict:
    """Validate request data as serializer_class(data=data).is_valid(raise_exception=True) does.

    Raises the same ValidationError. A new serializer deep-copies its declared fields, which costs
    more than validating one expense, so each thread validates with one instance per class:
    validation reads the fields and keeps no state on the instance. Rejected data is validated
    again by a new serializer, so the errors (for a null body, say) are exactly DRF's.
    """
    serializer = _reused_serializers.__dict__.get(serializer_class)
    if serializer is None:
        serializer = _reused_serializers.__dict__[serializer_class] = serializer_class()
    try:
        return serializer.run_validation(data)
    except serializers.ValidationError:
        pass
    fresh = serializer_class(data=data)
    fresh.is_valid(raise_exception=True)
    return fresh.validated_data


class StrictSerializer(serializers.Serializer):
    """A serializer that rejects fields it does not declare instead of ignoring them.

    A dict is validated by a shorter loop than DRF's (see _validate_dict) when the serializer's
    declaration allows it. Invalid data then goes through DRF's own path, so every error is DRF's.
    """

    def run_validation(self, data=serializers.empty):
        plan = self._fast_plan
        if plan is not None and type(data) is dict:
            try:
                return self._validate_dict(data, plan)
            except (serializers.ValidationError, DjangoValidationError):
                pass
        return super().run_validation(data)

    @cached_property
    def _fast_plan(self) -> tuple[frozenset[str], list[tuple[str, serializers.Field, object]]] | None:
        """Return the accepted names and, per field, its name, itself and the value it takes when absent.

        The value when absent is the field's default where that is a constant, else `empty`. None
        when DRF's path does more for a dict than run each field's run_validation in order:
        serializer validators, validate() or validate_<field>() methods, a subclass's own
        to_internal_value() or run_validators(), read-only fields, a partial root, a field with its
        own get_value or a source other than its name.
        """
        if self.read_only or self.validators or getattr(self.root, "partial", False):
            return None
        own = type(self)
        if own.validate is not serializers.Serializer.validate:
            return None
        # A subclass's own conversion or validators run only on DRF's path.
        if own.to_internal_value is not StrictSerializer.to_internal_value:
            return None
        if own.run_validators is not serializers.Serializer.run_validators:
            return None
        plan = []
        for name, field in self.fields.items():
            simple = (
                not field.read_only
                and type(field).get_value in _PLAIN_GET_VALUE
                and field.source_attrs == [name]
                and getattr(self, f"validate_{name}", None) is None
            )
            if not simple:
                return None
            constant_default = not field.required and field.default is not serializers.empty
            constant_default = constant_default and not callable(field.default)
            plan.append((name, field, field.default if constant_default else serializers.empty))
        return frozenset(self.fields), plan

    @staticmethod
    def _validate_dict(data: dict, plan) -> dict:
        """Validate a dict as DRF's Serializer.run_validation does, without its per-field plumbing.

        With no validators, no validate() and no read-only fields, DRF reads each declared field
        with data.get(name, empty) for a plain dict, runs its run_validation and leaves out a field
        that raises SkipField. An absent optional field with a constant default takes the default
        itself. This loop takes half of DRF's time for a batch of 1,000 expenses. An unknown field
        raises ValidationError too, so that run_validation takes DRF's path, which names the field.
        """
        names, fields = plan
        if not data.keys() <= names:
            raise serializers.ValidationError("Unknown field.")
        validated = {}
        for name, field, absent in fields:
            value = data.get(name, serializers.empty)
            if value is serializers.empty and absent is not serializers.empty:
                validated[name] = absent
                continue
            try:
                validated[name] = field.run_validation(value)
            except serializers.SkipField:
                pass
        return validated

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                accepted = ", ".join(sorted(self.fields))
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Accepted fields: {accepted}."] for name in unknown}
                )
        return super().to_internal_value(data)


@extend_schema_field(
    {
        # NOTE: JSON Schema cannot limit a number's fraction digits, so the number form admits
        # numbers with more than 15 decimals that the field rejects.
        "oneOf": [
            {"type": "string", "pattern": _AMOUNT_SCHEMA_PATTERN},
            {
                "type": "number",
                # OpenAPI 3.0 form: exclusiveMinimum and exclusiveMaximum are booleans.
                "minimum": -(10**AMOUNT_MAX_INTEGER_DIGITS),
                "exclusiveMinimum": True,
                "maximum": 10**AMOUNT_MAX_INTEGER_DIGITS,
                "exclusiveMaximum": True,
            },
        ],
        "description": f"Amount: {AMOUNT_FORMAT_HELP}.",
        "example": "1234.56",
    }
)
class AmountField(serializers.Field):
    """An exact decimal amount from a JSON number or a decimal string."""

    default_error_messages = {"invalid": f"Invalid amount; expected {AMOUNT_FORMAT_HELP}."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int, float, Decimal)):
            self.fail("invalid")
        if isinstance(data, str):
            text = data.strip()
            if not _AMOUNT_TEXT.match(text):
                self.fail("invalid")
            value = Decimal(text)
        elif isinstance(data, float):
            value = Decimal(repr(data))
        else:
            value = Decimal(data)
        if not value.is_finite():
            self.fail("invalid")
        digits = value.as_tuple()
        # A JSON number in exponent form (1e13) has a positive exponent: its integer digits
        # are its digits plus the trailing zeros the exponent stands for.
        fraction_digits = max(0, -int(digits.exponent))
        integer_digits = max(0, len(digits.digits) + int(digits.exponent))
        if integer_digits > AMOUNT_MAX_INTEGER_DIGITS or fraction_digits > AMOUNT_MAX_FRACTION_DIGITS:
            self.fail("invalid")
        try:
            # Exponent forms that passed the checks above (1.5e1) become plain decimals.
            return value.quantize(Decimal(1).scaleb(-fraction_digits)) if digits.exponent > 0 else value
        except InvalidOperation:
            self.fail("invalid")

    def to_representation(self, value):
        return str(value)


@extend_schema_field(
    {
        "type": "string",
        "enum": sorted(CURRENCY_CODES),
        "description": "ISO 4217 currency code; lower case is accepted too.",
        "example": "GBP",
    }
)
class CurrencyField(serializers.Field):
    default_error_messages = {"invalid": "Unknown currency; expected an ISO 4217 code such as GBP, EUR or USD."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        code = data.strip().upper()
        if code not in CURRENCY_CODES:
            self.fail("invalid")
        return code

    def to_representation(self, value):
        return value


@extend_schema_field(
    {
        # NOTE: the schema's pattern admits only YYYY-MM-DD dates from 1900 to 2199 with days up to
        # 28, so that generated requests carry real dates in range. The field also accepts days 29
        # to 31 where the month has them, and the date-time form that the description names.
        "type": "string",
        "pattern": r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$",
        "description": f"Date: {DATE_FORMAT_HELP}, from 1900-01-01 to 2199-12-31.",
        "example": "2024-11-13",
    }
)
class ExpenseDateField(serializers.Field):
    """The expense's calendar date for the business.

    A date-time keeps the date of its own offset: "2024-11-13T07:40:00+10:00" is 13 November,
    whatever the server's time zone. Day-first, month-first and compact forms are rejected
    because they are ambiguous ("05/04/2024").
    """

    default_error_messages = {
        "invalid": f"Invalid date; expected {DATE_FORMAT_HELP}.",
        "impossible": "Invalid date: no such day in the calendar, time of day or UTC offset.",
        "out_of_range": "Invalid date: expected a date from {first} to {last}.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        text = data.strip()
        try:
            if _ISO_DATE.match(text):
                value = datetime.date.fromisoformat(text)
            elif _ISO_DATETIME.match(text):
                value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
            else:
                self.fail("invalid")
        except ValueError:
            self.fail("impossible")
        first, last = EXPENSE_DATE_RANGE
        if not first <= value <= last:
            self.fail("out_of_range", first=first.isoformat(), last=last.isoformat())
        return value

    def to_representation(self, value):
        return value.isoformat()


# Unicode's control characters (category Cc) and surrogates (Cs), but tab, and in multiline text
# also newline and carriage return. One search instead of a category lookup per character.
_CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\ud800-\udfff"
_FORBIDDEN_ONE_LINE = re.compile(rf"(?!\t)[{_CONTROL_CHARACTERS}]")
_FORBIDDEN_MULTILINE = re.compile(rf"(?![\t\n\r])[{_CONTROL_CHARACTERS}]")


class CleanCharField(serializers.CharField):
    """A string with no control characters other than tab (and newline where multiline=True).

    Card statements align their columns with tabs, so a tab is kept as sent. Supplier keys and
    rule matching fold it like a space.
    """

    def __init__(self, *, multiline=False, **kwargs):
        kwargs.setdefault("trim_whitespace", True)
        super().__init__(**kwargs)
        self.multiline = multiline
        self._forbidden = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN_ONE_LINE
        # DRF's null and surrogate validators never fire after to_internal_value's own check.
        self.validators = [
            validator
            for validator in self.validators
            if not isinstance(validator, (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator))
        ]

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Invalid type; expected a string.")
        value = super().to_internal_value(data)
        forbidden = self._forbidden.search(value)
        if forbidden:
            raise serializers.ValidationError(
                f"Contains the control character U+{ord(forbidden.group()):04X}; remove control characters."
            )
        return value


@extend_schema_field({"type": "string", "pattern": _IDENTIFIER.pattern, "maxLength": 100, "example": "exp_1234"})
class IdentifierField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 100)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Invalid type; expected a string of {IDENTIFIER_HELP}.")
        value = super().to_internal_value(data)
        if not _IDENTIFIER.match(value):
            raise serializers.ValidationError(f"Invalid identifier; expected {IDENTIFIER_HELP}.")
        return value


class ExpenseFieldsSerializer(StrictSerializer):
    """The fields that describe one expense, as the app sends them."""

    business_id = IdentifierField()
    expense_id = IdentifierField(required=False)
    supplier = CleanCharField(max_length=300)
    description = CleanCharField(max_length=2000, required=False, allow_blank=True, default="", multiline=True)
    amount = AmountField()
    vat_amount = AmountField(required=False, allow_null=True, default=None)
    currency = CurrencyField()
    date = ExpenseDateField()
    payment_method = CleanCharField(max_length=50, required=False, allow_blank=True, default="")
    merchant_category = CleanCharField(max_length=200, required=False, allow_blank=True, default="")
    department = CleanCharField(max_length=300, required=False, allow_blank=True, default="")
