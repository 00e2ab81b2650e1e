"""lookup.stores.sql: versioned writes, tombstones, reads and exact decimals."""

import datetime
from decimal import Decimal

import pytest
from django.db import DataError, OperationalError
from django.db.models.sql.compiler import SQLCompiler

from lookup.domain import ApplyOutcome, ChangeKind, Expense, ExpenseChange
from lookup.stores import LookupStoreError, LookupStoreUnavailable
from lookup.stores.sql import SqlLookupStore

pytestmark = pytest.mark.django_db


def upsert(expense_id="e-1", *, version=1, category="Meals", supplier_key="blue heron cafe", **fields):
    expense = Expense(
        business_id=fields.pop("business_id", "b1"),
        expense_id=expense_id,
        version=version,
        supplier="Blue Heron Cafe",
        supplier_key=supplier_key,
        category=category,
        amount=fields.pop("amount", Decimal("4.50")),
        currency="GBP",
        date=fields.pop("date", datetime.date(2024, 11, 13)),
        **fields,
    )
    return ExpenseChange(
        kind=ChangeKind.UPSERT,
        business_id=expense.business_id,
        expense_id=expense_id,
        version=version,
        event_id=f"evt-{expense_id}-{version}",
        expense=expense,
    )


def delete(expense_id="e-1", *, version):
    return ExpenseChange(
        kind=ChangeKind.DELETE, business_id="b1", expense_id=expense_id, version=version, event_id=f"del-{version}"
    )


@pytest.fixture
def store():
    return SqlLookupStore()


def test_sql_store_insert(store):
    assert store.apply(upsert()) == ApplyOutcome.APPLIED
    assert store.get_expense(business_id="b1", expense_id="e-1").category == "Meals"


def test_sql_store_same_version_stale(store):
    store.apply(upsert(category="Meals"))

    outcome = store.apply(upsert(category="Travel"))

    assert outcome == ApplyOutcome.STALE
    assert store.get_expense(business_id="b1", expense_id="e-1").category == "Meals"


def test_sql_store_newer_version_applied(store):
    store.apply(upsert(version=1, category="Meals"))

    outcome = store.apply(upsert(version=2, category="Travel"))

    assert outcome == ApplyOutcome.APPLIED
    assert store.get_expense(business_id="b1", expense_id="e-1").category == "Travel"


def test_sql_store_tombstone_blocks_older(store):
    store.apply(upsert(version=1))
    store.apply(delete(version=3))

    outcome = store.apply(upsert(version=2))

    tombstone = store.get_expense(business_id="b1", expense_id="e-1")
    assert outcome == ApplyOutcome.STALE
    assert tombstone.deleted is True
    assert tombstone.version == 3


def test_sql_store_recreate_after_delete(store):
    store.apply(delete(version=2))

    outcome = store.apply(upsert(version=3))

    assert outcome == ApplyOutcome.APPLIED
    assert store.count_expenses(business_id="b1") == 1


def test_sql_store_delete_twice_never_negative(store):
    store.apply(upsert(version=1))
    store.apply(delete(version=2))

    outcome = store.apply(delete(version=2))

    assert outcome == ApplyOutcome.STALE
    assert store.count_expenses(business_id="b1") == 0


@pytest.mark.parametrize("amount", ["30.4", "0.1", "19.999999999999998", "-42.55", "0.000000000000001", "100"])
def test_sql_store_amount_exact(store, amount):
    store.apply(upsert(amount=Decimal(amount)))

    read = store.get_expense(business_id="b1", expense_id="e-1").amount

    assert read == Decimal(amount)
    assert str(read) == str(Decimal(amount))


def test_sql_store_missing_amounts_read_as_none(store):
    store.apply(upsert(amount=None, vat_amount=None))

    read = store.get_expense(business_id="b1", expense_id="e-1")

    assert read.amount is None
    assert read.vat_amount is None


def test_sql_store_similar_newest_first(store):
    store.apply(upsert("e-old", date=datetime.date(2023, 1, 1)))
    store.apply(upsert("e-new", date=datetime.date(2024, 6, 1)))
    store.apply(upsert("e-other", supplier_key="other"))

    similar = store.similar_expenses(business_id="b1", supplier_key="blue heron cafe", limit=10)

    assert [expense.expense_id for expense in similar] == ["e-new", "e-old"]


def test_sql_store_similar_excludes_deleted_and_other_business(store):
    store.apply(upsert("e-1"))
    store.apply(upsert("e-2"))
    store.apply(delete("e-2", version=2))
    store.apply(upsert("e-3", business_id="b2"))

    similar = store.similar_expenses(business_id="b1", supplier_key="blue heron cafe", limit=10)

    assert [expense.expense_id for expense in similar] == ["e-1"]


def test_sql_store_similar_limit(store):
    for number in range(5):
        store.apply(upsert(f"e-{number}"))

    assert len(store.similar_expenses(business_id="b1", supplier_key="blue heron cafe", limit=3)) == 3


def test_sql_store_iter_and_count(store):
    store.apply(upsert("e-1"))
    store.apply(upsert("e-2", business_id="b2"))

    assert store.count_expenses() == 2
    assert [expense.expense_id for expense in store.iter_expenses(business_id="b2")] == ["e-2"]


def test_sql_store_get_unknown(store):
    assert store.get_expense(business_id="b1", expense_id="never") is None


@pytest.fixture
def database_locked(monkeypatch):
    """Make every query fail as SQLite does when another writer holds the lock too long."""

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(SQLCompiler, "execute_sql", locked)


def test_sql_store_write_error_is_unavailable(store, database_locked):
    with pytest.raises(LookupStoreUnavailable):
        store.apply(upsert())


def test_sql_store_read_error_is_unavailable(store, database_locked):
    with pytest.raises(LookupStoreUnavailable):
        store.similar_expenses(business_id="b1", supplier_key="x", limit=1)


def test_sql_store_data_error_is_permanent(store, monkeypatch):
    def rejected(*args, **kwargs):
        raise DataError("value too long")

    monkeypatch.setattr(SQLCompiler, "execute_sql", rejected)

    with pytest.raises(LookupStoreError) as raised:
        store.apply(upsert())

    assert not isinstance(raised.value, LookupStoreUnavailable)


def test_sql_store_check_passes(store):
    assert store.check() is None
