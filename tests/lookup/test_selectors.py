"""lookup.selectors: override rule order and matching."""

import logging

import pytest

from lookup.models import OverrideRule
from lookup.selectors import first_matching_rule, rules_for_businesses

pytestmark = pytest.mark.django_db


def rule(value, category="Software", *, match=OverrideRule.Match.CONTAINS, **fields):
    return OverrideRule.objects.create(supplier_match=match, supplier_value=value, category=category, **fields)


def matched(supplier, business_id="b1"):
    rules = rules_for_businesses({business_id})[business_id]
    found = first_matching_rule(rules, supplier=supplier)
    return found.category if found else None


@pytest.mark.parametrize(
    "value, supplier",
    [
        ("Inst Xfer Adob", "PAYPAL\u00a0\u00a0 INST XFER\t ADOB"),
        ("rewe", "REWE Markt 4411"),
        ("STOP & SHOP", "Stop & Shop #0421"),
        ("A\\B Trading", "A\\B Trading"),
        ("[Draft] (Pty) Ltd", "[Draft] (Pty) Ltd"),
        ("istanbul", "İSTANBUL KAHVE"),
        ("İSTANBUL", "Istanbul Kahve"),
        ("Straße", "STRASSE Bau GmbH"),
        ("STRASSE", "Straße Bau"),
    ],
)
def test_rule_contains_matches(value, supplier):
    rule(value)

    assert matched(supplier) == "Software"


@pytest.mark.parametrize("value, supplier", [("Stop & Shop", "Shop & Stop"), ("A\\B Trading", "AB Trading")])
def test_rule_contains_no_match(value, supplier):
    rule(value)

    assert matched(supplier) is None


def test_rule_equals_uses_supplier_key():
    rule("Blue Heron Cafe", "Meals", match=OverrideRule.Match.EQUALS)

    assert matched("SQ *BLUE HERON CAFE") == "Meals"


def test_rule_equals_rejects_longer_name():
    rule("Blue Heron", "Meals", match=OverrideRule.Match.EQUALS)

    assert matched("Blue Heron Cafe") is None


def test_rule_starts_with():
    rule("paypal", match=OverrideRule.Match.STARTS_WITH)

    assert matched("PayPal *Adobe") == "Software"
    assert matched("Adobe via PayPal") is None


def test_rule_regex_keeps_punctuation():
    rule(r"^paypal \*ado", match=OverrideRule.Match.REGEX)

    assert matched("PAYPAL *ADOBE") == "Software"
    assert matched("PAYPAL ADOBE") is None


def test_rule_invalid_regex_skipped_and_logged(caplog):
    bad = rule("([unclosed", "Broken", match=OverrideRule.Match.REGEX, priority=10)
    rule("adobe", "Software", priority=1)

    with caplog.at_level(logging.WARNING, logger="lookup.selectors"):
        category = matched("Adobe Creative Cloud")

    assert category == "Software"
    [record] = [entry for entry in caplog.records if entry.name == "lookup.selectors"]
    assert record.rule_id == bad.pk


def test_rule_priority_order():
    rule("adobe", "Low", priority=1)
    rule("adobe", "High", priority=5)

    assert matched("Adobe") == "High"


def test_rule_business_before_global_at_equal_priority():
    rule("adobe", "Global")
    rule("adobe", "Own", business_id="b1")

    assert matched("Adobe") == "Own"


def test_rule_global_with_higher_priority_wins():
    rule("adobe", "Own", business_id="b1")
    rule("adobe", "Global", priority=3)

    assert matched("Adobe") == "Global"


def test_rule_other_business_ignored():
    rule("adobe", "Theirs", business_id="b2")

    assert matched("Adobe") is None


def test_rule_disabled_ignored():
    rule("adobe", enabled=False)

    assert matched("Adobe") is None


def test_rules_for_businesses_keys():
    rule("adobe", business_id="b1")
    rule("adobe", business_id="b2")
    rule("adobe")

    rules = rules_for_businesses({"b1", "b2", "b3"})

    assert {key: len(value) for key, value in rules.items()} == {"b1": 2, "b2": 2, "b3": 1}


def test_rules_for_businesses_one_query(django_assert_num_queries):
    rule("adobe", business_id="b1")

    with django_assert_num_queries(1):
        rules_for_businesses({"b1", "b2"})
