"""lookup.models: OverrideRule validation on save through forms and the admin."""

import pytest
from django.core.exceptions import ValidationError

from lookup.models import OverrideRule


def rule(value, match):
    return OverrideRule(supplier_match=match, supplier_value=value, category="Software")


@pytest.mark.parametrize("value", ["([unclosed", "*adobe", "(?P<x>a)(?P<x>b)"])
def test_override_rule_clean_invalid_regex(value):
    with pytest.raises(ValidationError) as raised:
        rule(value, OverrideRule.Match.REGEX).clean()

    assert "Invalid regular expression" in raised.value.message_dict["supplier_value"][0]


def test_override_rule_clean_valid_regex():
    assert rule(r"^paypal \*ado", OverrideRule.Match.REGEX).clean() is None


@pytest.mark.parametrize("value", ["***", "  ", "&"])
def test_override_rule_clean_value_without_letters(value):
    with pytest.raises(ValidationError) as raised:
        rule(value, OverrideRule.Match.CONTAINS).clean()

    assert "supplier_value" in raised.value.message_dict


@pytest.mark.parametrize("value", ["STOP & SHOP", "A\\B Trading", "[Draft] (Pty) Ltd"])
def test_override_rule_clean_literal_value(value):
    assert rule(value, OverrideRule.Match.CONTAINS).clean() is None


@pytest.mark.django_db
def test_override_rule_full_clean_invalid_regex():
    with pytest.raises(ValidationError):
        rule("([unclosed", OverrideRule.Match.REGEX).full_clean()
