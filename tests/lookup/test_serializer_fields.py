"""The strict expense fields shared by the events and prediction APIs."""

import sys
import unicodedata
from decimal import Decimal

import pytest
from rest_framework import serializers

from lookup.serializer_fields import AmountField, CleanCharField, IdentifierField, StrictSerializer


@pytest.mark.parametrize(("multiline", "allowed"), [(False, {"\t"}), (True, {"\t", "\n", "\r"})])
def test_clean_char_field_control_characters(multiline, allowed):
    field = CleanCharField(multiline=multiline)
    forbidden_categories = {"Cc", "Cs"}

    # Every code point of the Basic Multilingual Plane, where all Cc and Cs characters are, and the
    # first and last of the others. Each sits in the middle of a word, so trimming keeps it.
    mismatches = []
    for code_point in [*range(0x10000), 0x10000, 0x1F600, 0xE0001, sys.maxunicode]:
        char = chr(code_point)
        expected_rejected = unicodedata.category(char) in forbidden_categories and char not in allowed
        try:
            field.run_validation(f"a{char}b")
        except serializers.ValidationError:
            rejected = True
        else:
            rejected = False
        if rejected != expected_rejected:
            mismatches.append(f"U+{code_point:04X}")

    assert mismatches == []


def test_clean_char_field_names_first_character():
    with pytest.raises(serializers.ValidationError) as raised:
        CleanCharField().run_validation("Ink \x1b cartridge\x07")

    assert "U+001B" in str(raised.value.detail[0])


# StrictSerializer's dict loop against DRF's Serializer.run_validation on the same instance.


class _StrictExpense(StrictSerializer):
    supplier = CleanCharField(max_length=20)
    description = CleanCharField(required=False, allow_blank=True, default="")
    vat_amount = AmountField(required=False, allow_null=True, default=None)
    expense_id = IdentifierField(required=False)
    amount = AmountField()


@pytest.mark.parametrize(
    "data",
    [
        {"supplier": "Blue Heron Cafe", "amount": "4.50"},
        {"supplier": "  Blue Heron Cafe  ", "amount": 4, "description": "", "vat_amount": None},
        {"supplier": "Blue Heron Cafe", "amount": "4.50", "description": " two\tcolumns ", "expense_id": "e-1"},
    ],
)
def test_strict_serializer_dict_loop_equals_drf(data):
    serializer = _StrictExpense()

    validated = serializer.run_validation(data)

    assert validated == serializers.Serializer.run_validation(serializer, data)
    assert list(validated) == list(serializers.Serializer.run_validation(serializer, data))


def test_strict_serializer_absent_field_takes_default_object():
    serializer = _StrictExpense()

    validated = serializer.run_validation({"supplier": "Blue Heron Cafe", "amount": "4.50"})

    assert validated["description"] is serializer.fields["description"].default
    assert validated["vat_amount"] is None
    assert "expense_id" not in validated


@pytest.mark.parametrize(
    "data",
    [
        {"supplier": "Blue Heron Cafe", "amount": "4.50", "colour": "red"},
        {"supplier": "x" * 21, "amount": "4.50"},
        {"supplier": "", "amount": "abc"},
        {"amount": "4.50"},
        {"supplier": None, "amount": "4.50"},
    ],
)
def test_strict_serializer_errors_are_drf_errors(data):
    serializer = _StrictExpense()
    with pytest.raises(serializers.ValidationError) as expected:
        serializers.Serializer.run_validation(serializer, data)

    with pytest.raises(serializers.ValidationError) as raised:
        serializer.run_validation(data)

    assert raised.value.detail == expected.value.detail


def test_strict_serializer_with_validate_takes_drf_path():
    class Checked(_StrictExpense):
        def validate(self, attrs):
            return attrs | {"checked": True}

    serializer = Checked()

    assert serializer._fast_plan is None
    assert serializer.run_validation({"supplier": "Blue Heron Cafe", "amount": "4.50"})["checked"] is True


def test_strict_serializer_partial_takes_drf_path():
    serializer = _StrictExpense(partial=True)

    assert serializer._fast_plan is None
    assert serializer.run_validation({"amount": "4.50"}) == {"amount": Decimal("4.50")}
