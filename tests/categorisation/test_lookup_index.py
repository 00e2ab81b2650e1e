"""categorisation.replay.LookupIndex mirrors the SQL lookup store's similar-expenses query."""

import datetime
from decimal import Decimal

import pytest

from categorisation.replay import LookupIndex
from lookup.domain import Expense, ExpenseChange
from lookup.stores.sql import SqlLookupStore

pytestmark = pytest.mark.django_db

START = datetime.date(2024, 3, 1)
# (business, supplier key, day offset, category): two businesses share a key, one key has more
# expenses than the limit, and one date has two expenses.
SAMPLE = [
    ("b1", "acme", 0, "Office"),
    ("b1", "acme", 3, "Travel"),
    ("b1", "bolt", 4, "Fuel"),
    ("b1", "acme", 5, "Office"),
    ("b2", "acme", 6, "Repairs"),
    ("b1", "acme", 9, "Meals"),
    ("b1", "acme", 12, "Office"),
    ("b1", "bolt", 12, "Fuel"),
    ("b1", "bolt", 12, "Parking"),
]
LIMIT = 3


def sample_expenses() -> list[Expense]:
    return [
        Expense(
            business_id=business,
            expense_id=f"{business}-{number:03d}",
            version=1,
            supplier=key.title(),
            supplier_key=key,
            category=category,
            amount=Decimal("10.00"),
            currency="GBP",
            date=START + datetime.timedelta(days=offset),
        )
        for number, (business, key, offset, category) in enumerate(SAMPLE)
    ]


def by_date(expenses: list[Expense]) -> list[tuple[datetime.date, set[str]]]:
    """Group ids by date, newest first, because the store leaves the order of equal dates open."""
    groups: list[tuple[datetime.date, set[str]]] = []
    for expense in expenses:
        if groups and groups[-1][0] == expense.date:
            groups[-1][1].add(expense.expense_id)
        else:
            groups.append((expense.date, {expense.expense_id}))
    return groups


@pytest.mark.parametrize(("business", "key"), [("b1", "acme"), ("b2", "acme"), ("b1", "bolt"), ("b2", "bolt")])
def test_index_matches_sql_store(business, key):
    store = SqlLookupStore()
    index = LookupIndex(limit=LIMIT)
    for expense in sample_expenses():
        store.apply(ExpenseChange.upsert(expense))
        index.learn(expense)

    from_store = store.similar_expenses(business_id=business, supplier_key=key, limit=LIMIT)
    from_index = index.similar(business_id=business, supplier_key=key)

    assert by_date(from_index) == by_date(from_store)
    assert {e.expense_id: e.category for e in from_index} == {e.expense_id: e.category for e in from_store}


def test_index_matches_store_after_each_expense():
    store = SqlLookupStore()
    index = LookupIndex(limit=LIMIT)

    for expense in sample_expenses():
        before_store = store.similar_expenses(business_id="b1", supplier_key="acme", limit=LIMIT)
        assert by_date(index.similar(business_id="b1", supplier_key="acme")) == by_date(before_store)
        store.apply(ExpenseChange.upsert(expense))
        index.learn(expense)


def test_index_default_limit_is_setting(settings):
    settings.LOOKUP_MAX_MATCHES = 2

    assert LookupIndex().limit == 2
