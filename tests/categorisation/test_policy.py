"""categorisation.policy: ranking of rule, lookup and model candidates."""

import datetime
from dataclasses import replace
from decimal import Decimal

import pytest

from categorisation import policy
from lookup.domain import Expense

TODAY = datetime.date(2024, 11, 13)


def past(category, *, expense_id="e-1", amount="4.50", date=TODAY, version=1):
    return Expense(
        business_id="b1",
        expense_id=expense_id,
        version=version,
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
        "corrected": False,
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


def test_lookup_candidates_same_department_first():
    similar = [
        past("Meals", expense_id="e-1"),
        past("Meals", expense_id="e-2"),
        replace(past("Training", expense_id="e-3"), department="Libraries"),
    ]

    ranked = policy.lookup_candidates(
        similar=similar, amount=Decimal("4.50"), date=TODAY, generic=False, department="Libraries"
    )

    assert [candidate.category for candidate in ranked] == ["Training", "Meals"]


def test_model_candidates_evidence():
    [candidate] = model("Meals")

    assert candidate.source == "model"
    assert candidate.evidence == {"model_version": "v1"}


def test_rule_candidate_evidence():
    candidate = policy.rule_candidate(rule_id=4, category="Software")

    assert candidate.confidence == policy.RULE_CONFIDENCE
    assert candidate.evidence == {"rule_id": 4}


def test_combine_rule_first_then_blend():
    rule = policy.rule_candidate(rule_id=1, category="Software")
    unsure = policy.model_candidates(ranked=[{"category": "Travel", "confidence": 0.3}], model_version="v1")

    ranked = policy.combine(rule=rule, lookup=lookup([past("Meals")]), model=unsure, generic=False, top_k=5)

    assert [candidate.source for candidate in ranked] == ["rule", "lookup", "model"]
    assert ranked[0].confidence == policy.RULE_CONFIDENCE
    assert ranked[0].evidence == {"rule_id": 1}


def test_combine_one_match_beats_unsure_model():
    unsure = policy.model_candidates(ranked=[{"category": "Travel", "confidence": 0.4}], model_version="v1")

    ranked = policy.combine(rule=None, lookup=lookup([past("Meals")]), model=unsure, generic=False, top_k=5)

    assert [candidate.category for candidate in ranked] == ["Meals", "Travel"]
    assert ranked[0].source == "lookup"
    assert ranked[0].confidence == pytest.approx(policy.LOOKUP_WEIGHT * 0.5)


def test_combine_confident_model_beats_one_match():
    confident = policy.model_candidates(ranked=[{"category": "Travel", "confidence": 0.95}], model_version="v1")

    ranked = policy.combine(rule=None, lookup=lookup([past("Meals")]), model=confident, generic=False, top_k=5)

    assert [candidate.category for candidate in ranked] == ["Travel", "Meals"]


def test_combine_blends_shared_category():
    ranked = policy.combine(
        rule=None, lookup=lookup([past("Meals")]), model=model("Travel", "Meals"), generic=False, top_k=5
    )

    assert ranked[0].category == "Meals"
    expected = policy.LOOKUP_WEIGHT * 0.5 + (1 - policy.LOOKUP_WEIGHT) * 0.8
    assert ranked[0].confidence == pytest.approx(expected)
    assert ranked[0].source == "model"
    assert ranked[0].evidence == {"model_version": "v1"}
    assert ranked[1].confidence == pytest.approx((1 - policy.LOOKUP_WEIGHT) * 0.9)


def test_combine_lookup_minority_dropped():
    similar = [past("Meals", expense_id="e-1"), past("Meals", expense_id="e-2"), past("Travel", expense_id="e-3")]

    ranked = policy.combine(rule=None, lookup=lookup(similar), model=model("Software"), generic=False, top_k=5)

    assert sorted(candidate.category for candidate in ranked) == ["Meals", "Software"]


def test_combine_without_model_keeps_lookup():
    similar = [past("Meals", expense_id="e-1"), past("Travel", expense_id="e-2")]

    ranked = policy.combine(rule=None, lookup=lookup(similar), model=[], generic=False, top_k=5)

    assert [candidate.category for candidate in ranked] == ["Meals", "Travel"]
    assert [candidate.confidence for candidate in ranked] == [candidate.confidence for candidate in lookup(similar)]


def test_combine_without_lookup_keeps_model():
    ranked = policy.combine(rule=None, lookup=[], model=model("Travel", "Meals"), generic=False, top_k=5)

    assert [candidate.confidence for candidate in ranked] == [0.9, 0.8]


def test_combine_confidence_within_unit_interval():
    similar = [past("Meals", expense_id=f"e-{number}") for number in range(50)]
    certain = policy.model_candidates(ranked=[{"category": "Meals", "confidence": 1.0}], model_version="v1")

    [candidate] = policy.combine(rule=None, lookup=lookup(similar), model=certain, generic=False, top_k=5)

    assert 0.0 <= candidate.confidence <= 1.0


def test_combine_generic_model_first():
    ranked = policy.combine(
        rule=None, lookup=lookup([past("Software")], generic=True), model=model("Travel"), generic=True, top_k=5
    )

    assert [candidate.source for candidate in ranked] == ["model", "lookup"]
    assert ranked[1].confidence <= policy.GENERIC_LOOKUP_WEIGHT * policy.GENERIC_LOOKUP_CONFIDENCE_CAP


def test_combine_one_candidate_per_category():
    rule = policy.rule_candidate(rule_id=1, category="Meals")

    ranked = policy.combine(
        rule=rule, lookup=lookup([past("Meals")]), model=model("Meals", "Travel"), generic=False, top_k=5
    )

    assert [(candidate.category, candidate.source) for candidate in ranked] == [("Meals", "rule"), ("Travel", "model")]


def test_combine_top_k():
    ranked = policy.combine(rule=None, lookup=[], model=model("A", "B", "C", "D"), generic=False, top_k=2)

    assert [candidate.category for candidate in ranked] == ["A", "B"]


def test_correction_beats_confident_model():
    earlier = TODAY - datetime.timedelta(days=10)
    similar = [past("Travel", expense_id="e-9", version=2)]
    similar += [past("Meals", expense_id=f"e-{number}", date=earlier) for number in range(5)]

    lookup_ranked = lookup(similar)
    combined = policy.combine(rule=None, lookup=lookup_ranked, model=model("Meals"), generic=False, top_k=3)

    assert lookup_ranked[0].category == "Travel"
    assert lookup_ranked[0].evidence["corrected"] is True
    assert [candidate.category for candidate in combined] == ["Travel", "Meals"]


def test_correction_holds_for_same_category():
    corrected_on = TODAY - datetime.timedelta(days=20)
    similar = [past("Travel", expense_id="e-10", date=TODAY - datetime.timedelta(days=1))]
    similar += [past("Travel", expense_id="e-9", version=2, date=corrected_on)]
    similar += [
        past("Meals", expense_id=f"e-{number}", date=corrected_on - datetime.timedelta(days=5)) for number in range(5)
    ]

    combined = policy.combine(rule=None, lookup=lookup(similar), model=model("Meals"), generic=False, top_k=1)

    assert [candidate.category for candidate in combined] == ["Travel"]


def test_correction_ends_on_newer_category():
    corrected_on = TODAY - datetime.timedelta(days=20)
    similar = [past("Meals", expense_id="e-10", date=TODAY - datetime.timedelta(days=1))]
    similar += [past("Travel", expense_id="e-9", version=2, date=corrected_on)]

    ranked = lookup(similar)

    assert not any(candidate.evidence["corrected"] for candidate in ranked)


def test_correction_ends_on_later_learned_same_date():
    learned = datetime.datetime(2024, 11, 13, 9, 0, tzinfo=datetime.UTC)
    corrected = replace(past("Travel", expense_id="e-9", version=2), learned_at=learned)
    later = replace(past("Meals", expense_id="e-10"), learned_at=learned + datetime.timedelta(minutes=5))

    ranked = lookup([later, corrected])

    assert not any(candidate.evidence["corrected"] for candidate in ranked)


def test_correction_holds_over_earlier_learned_same_date():
    learned = datetime.datetime(2024, 11, 13, 9, 0, tzinfo=datetime.UTC)
    corrected = replace(past("Travel", expense_id="e-9", version=2), learned_at=learned)
    earlier = replace(past("Meals", expense_id="e-10"), learned_at=learned - datetime.timedelta(minutes=5))

    ranked = lookup([earlier, corrected])

    assert ranked[0].category == "Travel"
    assert ranked[0].evidence["corrected"] is True


def test_lookup_candidates_centuries_apart_still_rank():
    # Recency weights of past expenses a thousand years older underflow to zero.
    ancient = datetime.date(1000, 1, 1)
    similar = [past("Meals", expense_id="e-1", date=ancient), past("Meals", expense_id="e-2", date=ancient)]
    similar += [past("Travel", expense_id="e-3", date=ancient)]

    ranked = lookup(similar)

    assert [candidate.category for candidate in ranked] == ["Meals", "Travel"]
    assert ranked[0].confidence == pytest.approx(2 / 3 * 2 / 3, abs=1e-6)


def test_corrected_category_confidence_at_least_one_match():
    earlier = TODAY - datetime.timedelta(days=10)
    similar = [past("Travel", expense_id="e-9", version=2)]
    similar += [past("Meals", expense_id=f"e-{number}", date=earlier) for number in range(19)]

    [corrected, _] = lookup(similar)

    assert corrected.category == "Travel"
    assert corrected.confidence == policy.CORRECTED_MIN_CONFIDENCE


def test_lookup_candidates_shared_list_per_expense():
    similar = [
        past("Meals", expense_id="e-1", amount="4.50", date=TODAY - datetime.timedelta(days=3)),
        replace(past("Training", expense_id="e-2", amount="400"), department="Libraries"),
        past("Meals", expense_id="e-3", amount=None, date=None),
        past("Travel", expense_id="e-4", amount="-38.20", version=2),
    ]
    shared = policy.SimilarExpenses(similar)
    requests = [
        {"amount": Decimal("4.50"), "date": TODAY, "department": ""},
        {"amount": Decimal("390"), "date": TODAY + datetime.timedelta(days=400), "department": "Libraries"},
        {"amount": Decimal("-38.20"), "date": TODAY - datetime.timedelta(days=30), "department": "Parks"},
    ]

    for request in requests:
        for generic in (False, True):
            from_shared = policy.lookup_candidates(similar=shared, generic=generic, **request)
            from_plain = policy.lookup_candidates(similar=list(similar), generic=generic, **request)
            assert from_shared == from_plain


@pytest.mark.parametrize(
    ("similar", "ranked", "generic"),
    [
        # The lookup's leader among the model's categories, and a tie the model's order breaks.
        ([past("Meals")], [("Travel", 0.4), ("Meals", 0.3), ("Fuel", 0.4), ("Books", 0.05)], False),
        # The leader missing from the model, and a generic key.
        ([past("Meals"), past("Meals", expense_id="e-2")], [("Travel", 0.5), ("Fuel", 0.25)], True),
        # A corrected leader the model ranks last.
        ([past("Meals", version=2)], [("Travel", 0.9), ("Fuel", 0.05), ("Meals", 0.01)], False),
    ],
)
def test_combine_keeps_blend_order(similar, ranked, generic):
    lookup_ranked = lookup(similar, generic=generic)
    model_ranked = policy.model_candidates(
        ranked=[{"category": category, "confidence": confidence} for category, confidence in ranked],
        model_version="v1",
    )
    blended = policy.blend(lookup=lookup_ranked, model=model_ranked, generic=generic)

    for top_k in (1, 2, 3, 10):
        combined = policy.combine(rule=None, lookup=lookup_ranked, model=model_ranked, generic=generic, top_k=top_k)
        assert combined == blended[:top_k]
