"""lookup.rules and the rule selectors: every condition, combinators, bad rules, preview, conflicts."""

import datetime
import logging
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from lookup.domain import ChangeKind, Expense, ExpenseChange
from lookup.models import OverrideRule
from lookup.normalisation import supplier_key
from lookup.rules import InvalidRuleError, RuleSubject, rule_matches
from lookup.selectors import conflicting_rules, first_matching_rule, preview_rule, rules_for_businesses
from lookup.stores import get_lookup_store

Match = OverrideRule.Match
Sign = OverrideRule.Sign
Combinator = OverrideRule.Combinator


def unsaved(value="adobe", match=Match.CONTAINS, category="Software", **fields):
    return OverrideRule(supplier_match=match, supplier_value=value, category=category, **fields)


def subject(supplier="Adobe Systems", **fields):
    return RuleSubject(supplier=supplier, **fields)


def store_expense(expense_id, *, supplier="Adobe Systems", category="Software", business_id="b1", **fields):
    expense = Expense(
        business_id=business_id,
        expense_id=expense_id,
        version=1,
        supplier=supplier,
        supplier_key=supplier_key(supplier),
        category=category,
        amount=fields.pop("amount", Decimal("20.00")),
        currency=fields.pop("currency", "GBP"),
        date=datetime.date(2024, 11, 13),
        **fields,
    )
    get_lookup_store().apply(
        ExpenseChange(
            kind=ChangeKind.UPSERT,
            business_id=business_id,
            expense_id=expense_id,
            version=1,
            event_id=f"evt-{business_id}-{expense_id}",
            expense=expense,
        )
    )


@pytest.mark.parametrize(
    "match, value, supplier, expected",
    [
        (Match.EQUALS, "Blue Heron Cafe", "SQ *BLUE HERON CAFE", True),
        (Match.EQUALS, "Blue Heron", "Blue Heron Cafe", False),
        (Match.CONTAINS, "Inst Xfer Adob", "PAYPAL\u00a0\u00a0 INST XFER\t ADOB", True),
        (Match.CONTAINS, "rewe", "REWE Markt 4411", True),
        (Match.CONTAINS, "STOP & SHOP", "Stop & Shop #0421", True),
        (Match.CONTAINS, "A\\B Trading", "A\\B Trading", True),
        (Match.CONTAINS, "[Draft] (Pty) Ltd", "[Draft] (Pty) Ltd", True),
        (Match.CONTAINS, "café", "CAFE NERO", True),
        (Match.CONTAINS, "A\\B Trading", "AB Trading", False),
        (Match.STARTS_WITH, "paypal", "PayPal *Adobe", True),
        (Match.STARTS_WITH, "paypal", "Adobe via PayPal", False),
        (Match.REGEX, r"^paypal \*ado", "PAYPAL *ADOBE", True),
        (Match.REGEX, r"^paypal \*ado", "PAYPAL ADOBE", False),
        (Match.REGEX, r"caf[eé] nero", "CAFÉ NERO", True),
    ],
)
def test_supplier_condition(match, value, supplier, expected):
    assert rule_matches(unsaved(value, match), subject(supplier)) is expected


@pytest.mark.parametrize(
    "value, description, expected",
    [
        ("photoshop licence", "Annual PHOTOSHOP  licence, renewal", True),
        ("photoshop", "Lightroom", False),
        ("photoshop", "", False),
    ],
)
def test_description_condition(value, description, expected):
    rule = unsaved(description_contains=value)

    assert rule_matches(rule, subject(description=description)) is expected


@pytest.mark.parametrize(
    "sign, amount, expected",
    [
        (Sign.POSITIVE, Decimal("0.01"), True),
        (Sign.POSITIVE, Decimal("0"), False),
        (Sign.POSITIVE, Decimal("-0.01"), False),
        (Sign.NEGATIVE, Decimal("-0.01"), True),
        (Sign.NEGATIVE, Decimal("0"), False),
        (Sign.NEGATIVE, Decimal("5"), False),
        (Sign.NEGATIVE, None, False),
    ],
)
def test_sign_condition(sign, amount, expected):
    assert rule_matches(unsaved(amount_sign=sign), subject(amount=amount)) is expected


@pytest.mark.parametrize(
    "amount, expected",
    [
        (Decimal("9.99"), False),
        (Decimal("10.00"), True),
        (Decimal("55"), True),
        (Decimal("100.00"), True),
        (Decimal("100.0001"), False),
        (Decimal("-10.00"), True),
        (Decimal("-100.01"), False),
        (None, False),
    ],
)
def test_amount_range_bounds_inclusive(amount, expected):
    rule = unsaved(amount_min=Decimal("10"), amount_max=Decimal("100"))

    assert rule_matches(rule, subject(amount=amount)) is expected


def test_amount_open_ended_bounds():
    at_least = unsaved(amount_min=Decimal("100"))
    at_most = unsaved(amount_max=Decimal("100"))

    assert rule_matches(at_least, subject(amount=Decimal("1000000"))) is True
    assert rule_matches(at_least, subject(amount=Decimal("99.99"))) is False
    assert rule_matches(at_most, subject(amount=Decimal("0"))) is True
    assert rule_matches(at_most, subject(amount=Decimal("100.01"))) is False


def test_amount_range_with_sign_rejects_refund():
    rule = unsaved(amount_min=Decimal("10"), amount_sign=Sign.POSITIVE)

    assert rule_matches(rule, subject(amount=Decimal("20"))) is True
    assert rule_matches(rule, subject(amount=Decimal("-20"))) is False


@pytest.mark.parametrize("currency, expected", [("GBP", True), ("gbp", True), ("EUR", False), ("", False)])
def test_currency_condition(currency, expected):
    assert rule_matches(unsaved(currency="GBP"), subject(currency=currency)) is expected


@pytest.mark.parametrize(
    "method, expected", [("card", True), ("CARD", True), ("bank_transfer", False), ("credit card", False), ("", False)]
)
def test_payment_method_condition(method, expected):
    assert rule_matches(unsaved(payment_method="card"), subject(payment_method=method)) is expected


@pytest.mark.parametrize(
    "merchant_category, expected",
    [("Computer Software Stores", True), ("computer-software", True), ("Restaurants", False), ("", False)],
)
def test_merchant_category_condition(merchant_category, expected):
    rule = unsaved(merchant_category_contains="computer software")

    assert rule_matches(rule, subject(merchant_category=merchant_category)) is expected


def test_all_of_needs_every_condition():
    rule = unsaved(description_contains="licence", currency="GBP", combinator=Combinator.ALL)

    assert rule_matches(rule, subject(description="licence", currency="GBP")) is True
    assert rule_matches(rule, subject(description="licence", currency="EUR")) is False
    assert rule_matches(rule, subject("Other Shop", description="licence", currency="GBP")) is False


def test_any_of_needs_one_condition():
    rule = unsaved(description_contains="licence", currency="GBP", combinator=Combinator.ANY)

    assert rule_matches(rule, subject("Other Shop", description="licence", currency="EUR")) is True
    assert rule_matches(rule, subject("Other Shop", description="", currency="GBP")) is True
    assert rule_matches(rule, subject("Adobe", description="", currency="EUR")) is True
    assert rule_matches(rule, subject("Other Shop", description="", currency="EUR")) is False


def test_invalid_regex_raises_for_any_combinator():
    for combinator in Combinator:
        rule = unsaved("([unclosed", Match.REGEX, combinator=combinator, currency="GBP")

        with pytest.raises(InvalidRuleError):
            rule_matches(rule, subject(currency="GBP"))


def test_subject_from_mapping_blank_fields():
    folded = RuleSubject.from_mapping({"supplier": "Adobe", "description": None})

    assert folded.folded_description == ""
    assert folded.amount is None
    assert folded.currency == ""


@pytest.mark.django_db
class TestFirstMatchingRule:
    def matched(self, expense, business_id="b1"):
        rules = rules_for_businesses({business_id})[business_id]
        found = first_matching_rule(rules, expense=expense)
        return found.category if found else None

    def test_whole_expense_used(self):
        OverrideRule.objects.create(
            supplier_value="paypal", description_contains="adobe", category="Software", priority=5
        )
        OverrideRule.objects.create(supplier_value="paypal", category="Other")

        assert self.matched({"supplier": "PAYPAL *", "description": "Adobe CC"}) == "Software"
        assert self.matched({"supplier": "PAYPAL *", "description": "Tesco"}) == "Other"

    def test_bad_stored_regex_skipped_others_run(self, caplog):
        bad = OverrideRule.objects.create(
            supplier_match=Match.REGEX, supplier_value="([unclosed", category="Broken", priority=10
        )
        OverrideRule.objects.create(supplier_value="[Draft] (Pty) Ltd", category="Literal", priority=5)

        with caplog.at_level(logging.WARNING, logger="lookup.selectors"):
            category = self.matched({"supplier": "[Draft] (Pty) Ltd", "amount": Decimal("3")})

        assert category == "Literal"
        [record] = [entry for entry in caplog.records if entry.name == "lookup.selectors"]
        assert record.rule_id == bad.pk
        assert "([unclosed" in record.getMessage()

    def test_regex_saved_through_full_clean_rejected(self):
        rule = unsaved("*adobe", Match.REGEX)

        with pytest.raises(ValidationError) as raised:
            rule.full_clean()

        assert "Invalid regular expression '*adobe'" in raised.value.message_dict["supplier_value"][0]


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"amount_min": Decimal("10"), "amount_max": Decimal("5")}, "amount_max"),
        ({"amount_min": Decimal("-1")}, "amount_min"),
        ({"currency": "GB"}, "currency"),
        ({"currency": "G1P"}, "currency"),
        ({"description_contains": "&&"}, "description_contains"),
        ({"payment_method": "--"}, "payment_method"),
        ({"merchant_category_contains": "*"}, "merchant_category_contains"),
    ],
)
@pytest.mark.django_db
def test_full_clean_rejects_invalid_condition(fields, field):
    with pytest.raises(ValidationError) as raised:
        unsaved(**fields).full_clean()

    assert field in raised.value.message_dict


@pytest.mark.django_db
def test_full_clean_upper_cases_currency():
    rule = unsaved(currency="gbp")

    rule.full_clean()

    assert rule.currency == "GBP"


@pytest.mark.django_db
def test_existing_rule_defaults_match_supplier_only():
    rule = OverrideRule.objects.create(supplier_value="adobe", category="Software")

    assert rule.combinator == Combinator.ALL
    assert rule.amount_sign == Sign.ANY
    assert rule_matches(rule, subject("Adobe", amount=Decimal("-5"), currency="XOF")) is True


@pytest.mark.django_db
class TestPreviewRule:
    def test_counts_matches_and_changes(self):
        store_expense("e1", category="Software")
        store_expense("e2", category="Meals")
        store_expense("e3", supplier="Tesco", category="Groceries")
        store_expense("e4", category="Meals", business_id="b2")

        preview = preview_rule(unsaved(business_id="b1"), max_scanned=100, max_examples=10)

        assert preview.scanned == 3
        assert preview.matched == 2
        assert preview.would_change == 1
        assert preview.truncated is False
        assert sorted(expense.expense_id for expense in preview.examples) == ["e1", "e2"]

    def test_global_rule_scans_every_business(self):
        store_expense("e1", business_id="b1")
        store_expense("e2", business_id="b2", category="Meals")

        preview = preview_rule(unsaved(), max_scanned=100, max_examples=10)

        assert preview.matched == 2
        assert preview.would_change == 1

    def test_stops_at_max_scanned(self):
        for number in range(5):
            store_expense(f"e{number}")

        preview = preview_rule(unsaved(business_id="b1"), max_scanned=3, max_examples=1)

        assert preview.scanned == 3
        assert preview.truncated is True
        assert preview.matched == 3
        assert len(preview.examples) == 1

    def test_exact_max_not_truncated(self):
        for number in range(3):
            store_expense(f"e{number}")

        preview = preview_rule(unsaved(business_id="b1"), max_scanned=3, max_examples=10)

        assert preview.truncated is False

    def test_invalid_regex_raises(self):
        with pytest.raises(InvalidRuleError):
            preview_rule(unsaved("([", Match.REGEX, business_id="b1"), max_scanned=10, max_examples=10)


@pytest.mark.django_db
class TestConflictingRules:
    def create(self, value, category, match=Match.CONTAINS, **fields):
        return OverrideRule.objects.create(supplier_match=match, supplier_value=value, category=category, **fields)

    def test_contained_value_other_category(self):
        other = self.create("adobe systems", "Marketing", business_id="b1")

        assert conflicting_rules(unsaved("ADOBE", business_id="b1")) == [other]

    def test_global_rule_conflicts_with_business_rule(self):
        other = self.create("adobe", "Marketing")

        assert conflicting_rules(unsaved("Adobe Systems", business_id="b1")) == [other]

    @pytest.mark.parametrize(
        "fields",
        [
            {"supplier_value": "adobe", "category": "Software", "business_id": "b1"},
            {"supplier_value": "adobe", "category": "Marketing", "business_id": "b2"},
            {"supplier_value": "adobe", "category": "Marketing", "business_id": "b1", "enabled": False},
            {"supplier_value": "tesco", "category": "Marketing", "business_id": "b1"},
        ],
    )
    def test_no_conflict(self, fields):
        OverrideRule.objects.create(**fields)

        assert conflicting_rules(unsaved("adobe", business_id="b1")) == []

    def test_regex_against_literal(self):
        other = self.create(r"^adobe\b", "Marketing", Match.REGEX)

        assert conflicting_rules(unsaved("Adobe Systems", business_id="b1")) == [other]
        assert conflicting_rules(unsaved("Systems Adobe", business_id="b1")) == []

    def test_saved_rule_not_its_own_conflict(self):
        rule = self.create("adobe", "Software", business_id="b1")
        self.create("adobe", "Software", business_id="b1")

        assert conflicting_rules(rule) == []
