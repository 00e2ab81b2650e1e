"""similar_expenses_many, the batch read of the hot path, returns what similar_expenses returns per key."""

import datetime
from decimal import Decimal

from tests.lookup.contract.changes import delete, upsert

COFFEE = ("b1", "blue heron cafe")
TAXI = ("b1", "city cabs")
OTHER_BUSINESS_COFFEE = ("b2", "blue heron cafe")


def _fill(store):
    for day in range(1, 8):
        store.apply(upsert(f"coffee-{day}", day, date=datetime.date(2024, 5, day)))
    store.apply(upsert("coffee-undated", 3, date=None))
    store.apply(upsert("taxi-1", supplier="City Cabs", supplier_key="city cabs", category="Travel"))
    store.apply(upsert("taxi-2", supplier="City Cabs", supplier_key="city cabs", category="Travel"))
    store.apply(delete("taxi-2", 2))
    store.apply(upsert("b2-coffee", business_id="b2", category="Staff welfare"))


def test_each_key_gets_what_similar_expenses_returns(store):
    _fill(store)
    keys = [COFFEE, TAXI, OTHER_BUSINESS_COFFEE, ("b1", "never seen"), ("b3", "blue heron cafe")]

    found = store.similar_expenses_many(keys=keys, limit=5)

    assert list(found) == keys
    for business_id, supplier_key in keys:
        expected = store.similar_expenses(business_id=business_id, supplier_key=supplier_key, limit=5)
        assert found[(business_id, supplier_key)] == expected
    assert [expense.expense_id for expense in found[COFFEE]] == [f"coffee-{day}" for day in range(7, 2, -1)]
    assert [expense.expense_id for expense in found[TAXI]] == ["taxi-1"]
    assert [expense.category for expense in found[OTHER_BUSINESS_COFFEE]] == ["Staff welfare"]
    assert found[("b1", "never seen")] == []


def test_undated_expenses_come_last_within_a_key(store):
    _fill(store)

    found = store.similar_expenses_many(keys=[TAXI, COFFEE], limit=50)

    assert [expense.expense_id for expense in found[COFFEE]][-1] == "coffee-undated"
    assert found[COFFEE][-1].date is None
    assert len(found[COFFEE]) == 8


def test_repeated_keys_are_read_once(store):
    _fill(store)

    found = store.similar_expenses_many(keys=[COFFEE, TAXI, COFFEE], limit=2)

    assert list(found) == [COFFEE, TAXI]
    assert [expense.expense_id for expense in found[COFFEE]] == ["coffee-7", "coffee-6"]


def test_no_keys_and_zero_limit(store):
    _fill(store)

    assert store.similar_expenses_many(keys=[], limit=5) == {}
    assert store.similar_expenses_many(keys=[COFFEE], limit=0) == {COFFEE: []}


def test_expenses_equal_get_expense(store):
    _fill(store)
    store.apply(
        upsert("coffee-2", 2, date=datetime.date(2024, 5, 2), category="Staff welfare", vat_amount=Decimal("0.75"))
    )

    found = store.similar_expenses_many(keys=[COFFEE, TAXI], limit=50)

    for expense in found[COFFEE] + found[TAXI]:
        stored = store.get_expense(business_id=expense.business_id, expense_id=expense.expense_id)
        assert expense == stored
        assert expense.learned_at is not None
        assert expense.learned_at.utcoffset() == datetime.timedelta(0)
