"""The strict expense fields shared by the events and prediction APIs."""

import sys
import unicodedata

import pytest
from rest_framework import serializers

from lookup.serializer_fields import CleanCharField


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
