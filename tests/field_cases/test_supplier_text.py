"""Field cases C1-C3: supplier text as card statements print it, and literal rule values."""

import logging

import pytest

from categorisation import calibration, policy
from lookup.models import OverrideRule
from lookup.stores import get_lookup_store
from tests.factories import created_event

pytestmark = pytest.mark.django_db

Match = OverrideRule.Match

# Real shops paid through PayPal, none of them related to the others.
PAYPAL_SOFTWARE_DESCRIPTIONS = [
    "Adobe Creative Cloud",
    "Zoom annual plan",
    "JetBrains licence",
    "Dropbox Plus",
    "1Password family",
]
# Below this a prediction is a suggestion for a person to confirm, not a category to file unreviewed.
CONFIDENT = 0.5


def stored(expense_id: str):
    return get_lookup_store().get_expense(business_id="b1", expense_id=expense_id)


def seed_blue_heron(seed):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals") for _ in range(2)])


def seed_paypal_software(seed):
    seed(
        [
            created_event(supplier="PAYPAL *", description=description, category="Software", amount="19.99")
            for description in PAYPAL_SOFTWARE_DESCRIPTIONS
        ]
    )


# C1: processor prefixes and references.


@pytest.mark.parametrize(
    "supplier",
    [
        "SQ *BLUE HERON CAFE",
        "SUMUP *Blue Heron Cafe",
        "Blue Heron Cafe #0042",
        # The same kind of fault: other terminals, spacing around "*", and a prefix with a store number.
        "SQ*BLUE HERON CAFE",
        "SumUp  *  Blue Heron Cafe",
        "IZ *Blue Heron Cafe",
        "ZETTLE_*Blue Heron Cafe",
        "SQ *BLUE HERON CAFE #0042",
        "BLUE HERON CAFE 0042",
        "Blue Heron Café",
    ],
)
def test_c1_processor_prefixes_match_the_seeded_supplier(seed, predict, supplier):
    seed_blue_heron(seed)

    body = predict(supplier=supplier)

    top = body["categories"][0]
    assert top["category"] == "Meals"
    assert top["source"] == "lookup"
    assert top["evidence"]["matches"] == 2
    assert top["evidence"]["agreeing"] == 2
    assert top["evidence"]["generic_supplier"] is False


def test_c1_amazon_references_share_one_key(seed, predict):
    seed([created_event(expense_id="amzn-1", supplier="AMZN Mktp UK*1F37B5QZ4", category="Office supplies")])
    seed([created_event(expense_id="amzn-2", supplier="AMZN Mktp UK*9XK22LL01", category="Office supplies")])

    body = predict(supplier="AMZN Mktp UK*9XK22LL01")

    assert stored("amzn-1").supplier_key == stored("amzn-2").supplier_key
    top = body["categories"][0]
    assert top["category"] == "Office supplies"
    assert top["evidence"]["matches"] == 2
    assert {item["expense_id"] for item in top["evidence"]["expenses"]} == {"amzn-1", "amzn-2"}


def test_c1_amazon_marketplace_is_generic_evidence(seed, predict):
    # Amazon sells every kind of goods, so its shared key is capped like a payment processor's.
    seed([created_event(supplier="AMZN Mktp UK*1F37B5QZ4", category="Office supplies") for _ in range(5)])

    body = predict(supplier="AMZN Mktp UK*9XK22LL01")

    top = body["categories"][0]
    assert top["evidence"]["generic_supplier"] is True
    assert top["confidence"] <= policy.GENERIC_LOOKUP_CONFIDENCE_CAP


def test_c1_bare_paypal_not_confident_from_lookup(seed, predict):
    seed_paypal_software(seed)

    body = predict(supplier="PAYPAL *", description="Etsy: knitting wool")

    top = body["categories"][0]
    assert top["source"] == "lookup"
    assert top["evidence"]["generic_supplier"] is True
    assert top["evidence"]["agreeing"] == 5
    assert top["confidence"] <= policy.GENERIC_LOOKUP_CONFIDENCE_CAP
    assert top["confidence"] < CONFIDENT
    assert body["tier"] != calibration.AUTO_APPLY


def test_c1_bare_paypal_not_auto_applied_with_model(seed, predict, train_active_model):
    # The model learns from the same five expenses, so it must not turn "paypal" into software either.
    seed_paypal_software(seed)
    seed_blue_heron(seed)
    version = train_active_model()

    body = predict(supplier="PAYPAL *", description="Etsy: knitting wool")

    assert body["model_version"] == version
    assert body["degraded"] == []
    assert body["tier"] != calibration.AUTO_APPLY, body
    lookup = [candidate for candidate in body["categories"] if candidate["source"] == "lookup"]
    assert all(candidate["evidence"]["generic_supplier"] for candidate in lookup)


def test_c1_paypal_merchants_keep_their_own_keys(seed, predict):
    seed([created_event(supplier="PAYPAL *ADOBE", category="Software") for _ in range(2)])

    body = predict(supplier="PAYPAL *ETSY", description="knitting wool")

    assert body["categories"] == []


# C2: spacing and case.


def test_c2_rule_matches_across_nbsp_and_tabs(predict):
    rule = OverrideRule.objects.create(supplier_value="Inst Xfer Adob", category="Software")

    body = predict(supplier="PAYPAL\u00a0\u00a0 INST XFER\t ADOB")

    assert body["categories"][0] == {
        "category": "Software",
        "confidence": 1.0,
        "source": "rule",
        "evidence": {"rule_id": rule.pk},
    }


def test_c2_lower_case_rule_matches_upper_case_supplier(predict):
    OverrideRule.objects.create(supplier_value="rewe", category="Groceries")

    body = predict(supplier="REWE Markt 4411")

    assert body["categories"][0]["category"] == "Groceries"
    assert body["categories"][0]["source"] == "rule"


@pytest.mark.parametrize(
    "rule_value, supplier",
    [
        ("istanbul kahve", "İSTANBUL KAHVE"),
        ("İSTANBUL", "Istanbul Kahve"),
        ("Straße", "STRASSE Bau"),
        ("STRASSE", "Straße Bau"),
    ],
)
def test_c2_dotted_i_and_sharp_s_match_rules(predict, rule_value, supplier):
    OverrideRule.objects.create(supplier_value=rule_value, category="Supplies")

    body = predict(supplier=supplier)

    assert body["categories"][0]["category"] == "Supplies"


@pytest.mark.parametrize("history, request_supplier", [("İSTANBUL KAHVE", "istanbul kahve"), ("Straße", "STRASSE")])
def test_c2_dotted_i_and_sharp_s_share_lookup_key(seed, predict, history, request_supplier):
    seed([created_event(supplier=history, category="Supplies")])

    body = predict(supplier=request_supplier)

    assert body["categories"][0]["category"] == "Supplies"
    assert body["categories"][0]["source"] == "lookup"


@pytest.mark.parametrize("supplier", ["İSTANBUL KAHVE", "Straße", "STRASSE", "PAYPAL\u00a0\u00a0 INST XFER\t ADOB"])
def test_c2_unusual_text_accepted_by_events(seed, supplier):
    body = seed([created_event(expense_id="e-text", supplier=supplier)])

    assert body["accepted"] == 1
    assert stored("e-text").supplier == supplier.strip()


# C3: literal rule values.


def test_c3_ampersand_rule_matches_store_number(predict):
    OverrideRule.objects.create(supplier_value="STOP & SHOP", category="Groceries")

    body = predict(supplier="Stop & Shop #0421")

    assert body["categories"][0]["category"] == "Groceries"
    assert body["categories"][0]["source"] == "rule"


@pytest.mark.parametrize("value", ["A\\B Trading", "[Draft] (Pty) Ltd"])
def test_c3_backslash_and_brackets_match_literally(predict, value):
    OverrideRule.objects.create(supplier_value=value, category="Literal")

    body = predict(supplier=value)

    assert body["categories"][0]["category"] == "Literal"


@pytest.mark.parametrize("value, other", [("A\\B Trading", "AB Trading"), ("STOP & SHOP", "Shop & Stop")])
def test_c3_literal_value_is_not_a_pattern(predict, value, other):
    OverrideRule.objects.create(supplier_value=value, category="Literal")

    body = predict(supplier=other)

    assert body["categories"] == []


@pytest.mark.parametrize("pattern", ["([unclosed", "*adobe", "[Draft] (Pty", "a{2,1}"])
def test_c3_invalid_regex_rejected_on_save(admin_client, pattern):
    response = admin_client.post(
        "/admin/lookup/overriderule/add/",
        {
            "supplier_match": Match.REGEX,
            "supplier_value": pattern,
            "category": "Broken",
            "priority": 0,
            "enabled": "on",
            "combinator": OverrideRule.Combinator.ALL,
            "amount_sign": OverrideRule.Sign.ANY,
        },
    )

    assert response.status_code == 200
    assert "Invalid regular expression" in response.content.decode()
    assert not OverrideRule.objects.exists()


def test_c3_stored_bad_regex_skipped_other_rules_run(predict, caplog):
    # bulk_create skips full_clean, as a rule written before validation existed would have been.
    [bad] = OverrideRule.objects.bulk_create(
        [OverrideRule(supplier_match=Match.REGEX, supplier_value="([unclosed", category="Broken", priority=10)]
    )
    OverrideRule.objects.create(supplier_value="STOP & SHOP", category="Groceries", priority=1)

    with caplog.at_level(logging.WARNING, logger="lookup.selectors"):
        body = predict(supplier="Stop & Shop #0421")

    assert body["categories"][0]["category"] == "Groceries"
    assert body["degraded"] == ["model"]
    warnings = [record for record in caplog.records if record.name == "lookup.selectors"]
    assert [record.rule_id for record in warnings] == [bad.pk]
