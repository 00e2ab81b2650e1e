"""categorisation.policy: ranking of rule, lookup and model candidates."""

import datetime
from decimal import Decimal

import pytest

from categorisation import policy
from lookup.domain import Expense

TODAY = datetime.date(2024, 11, 13)


def past(category, *, expense_id="e-1", amount="4.50", date=TODAY):
    return Expense(
        business_id="b1",
        expense_id=expense_id,
        version=1,
        supplier="Blue Heron Cafe",
        supplier_key="blue heron cafe",
        category=category,
        amount=Decimal(amount) if amount is not None else None,
        currency="GBP",
        date=date,
    )


def lookup(similar, *, amount="4.50", generic=False):
    return policy.lookup_candidates(similar=similar, amount=Decimal(amount), date=TODAY, generic=generic)


def model(*categories):
    ranked = [{"category": category, "confidence": 0.9 - index * 0.1} for index, category in enumerate(categories)]
    return policy.model_candidates(ranked=ranked, model_version="v1")


def test_lookup_candidates_empty():
    assert lookup([]) == []


def test_lookup_candidates_one_match_half_confidence():
    [candidate] = lookup([past("Meals")])

    assert candidate.confidence == 0.5


def test_lookup_candidates_nine_agreeing():
    [candidate] = lookup([past("Meals", expense_id=f"e-{number}") for number in range(9)])

    assert candidate.confidence == pytest.approx(0.9)


def test_lookup_candidates_majority_first():
    similar = [past("Meals", expense_id="e-1"), past("Meals", expense_id="e-2"), past("Travel", expense_id="e-3")]

    ranked = lookup(similar)

    assert [candidate.category for candidate in ranked] == ["Meals", "Travel"]


def test_lookup_candidates_evidence():
    [candidate] = lookup([past("Meals", expense_id="e-7")])

    assert candidate.source == "lookup"
    assert candidate.evidence == {
        "matches": 1,
        "agreeing": 1,
        "generic_supplier": False,
        "expenses": [{"expense_id": "e-7", "date": "2024-11-13"}],
    }


def test_lookup_candidates_evidence_capped():
    [candidate] = lookup([past("Meals", expense_id=f"e-{number}") for number in range(8)])

    assert len(candidate.evidence["expenses"]) == policy.MAX_EVIDENCE_EXPENSES


def test_lookup_candidates_generic_capped():
    [candidate] = lookup([past("Software", expense_id=f"e-{number}") for number in range(5)], generic=True)

    assert candidate.confidence == policy.GENERIC_LOOKUP_CONFIDENCE_CAP
    assert candidate.evidence["generic_supplier"] is True


def test_lookup_candidates_refund_matches_purchase():
    similar = [past("Meals", expense_id="e-1", amount="42.55"), past("Travel", expense_id="e-2", amount="4000")]

    ranked = lookup(similar, amount="-42.55")

    assert ranked[0].category == "Meals"


def test_lookup_candidates_recent_wins_tie():
    old = past("Travel", expense_id="e-1", date=TODAY - datetime.timedelta(days=730))
    recent = past("Meals", expense_id="e-2", date=TODAY - datetime.timedelta(days=10))

    ranked = lookup([old, recent])

    assert ranked[0].category == "Meals"


def test_lookup_candidates_missing_date_and_amount():
    [candidate] = lookup([past("Meals", amount=None, date=None)])

    assert candidate.evidence["expenses"] == [{"expense_id": "e-1", "date": None}]


def test_model_candidates_evidence():
    [candidate] = model("Meals")

    assert candidate.source == "model"
    assert candidate.evidence == {"model_version": "v1"}


def test_rule_candidate_evidence():
    candidate = policy.rule_candidate(rule_id=4, category="Software")

    assert candidate.confidence == policy.RULE_CONFIDENCE
    assert candidate.evidence == {"rule_id": 4}


def test_combine_rule_then_lookup_then_model():
    rule = policy.rule_candidate(rule_id=1, category="Software")

    ranked = policy.combine(rule=rule, lookup=lookup([past("Meals")]), model=model("Travel"), generic=False, top_k=5)

    assert [candidate.source for candidate in ranked] == ["rule", "lookup", "model"]


def test_combine_generic_model_first():
    ranked = policy.combine(
        rule=None, lookup=lookup([past("Software")], generic=True), model=model("Travel"), generic=True, top_k=5
    )

    assert [candidate.source for candidate in ranked] == ["model", "lookup"]


def test_combine_one_candidate_per_category():
    rule = policy.rule_candidate(rule_id=1, category="Meals")

    ranked = policy.combine(
        rule=rule, lookup=lookup([past("Meals")]), model=model("Meals", "Travel"), generic=False, top_k=5
    )

    assert [(candidate.category, candidate.source) for candidate in ranked] == [("Meals", "rule"), ("Travel", "model")]


def test_combine_top_k():
    ranked = policy.combine(rule=None, lookup=[], model=model("A", "B", "C", "D"), generic=False, top_k=2)

    assert [candidate.category for candidate in ranked] == ["A", "B"]
