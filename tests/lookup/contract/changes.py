"""Builders of ExpenseChange values for the contract tests."""

import datetime
import itertools
from decimal import Decimal

from lookup.domain import ChangeKind, Expense, ExpenseChange

_event_numbers = itertools.count(1)


def upsert(
    expense_id: str,
    version: int = 1,
    *,
    business_id: str = "b1",
    supplier: str = "Blue Heron Cafe",
    supplier_key: str = "blue heron cafe",
    category: str = "Meals",
    amount: Decimal | None = Decimal("4.50"),
    date: datetime.date | None = datetime.date(2024, 11, 13),
    **fields,
) -> ExpenseChange:
    event_id = f"evt-{next(_event_numbers)}"
    expense = Expense(
        business_id=business_id,
        expense_id=expense_id,
        version=version,
        supplier=supplier,
        supplier_key=supplier_key,
        category=category,
        amount=amount,
        currency=fields.pop("currency", "GBP"),
        date=date,
        source_event_id=event_id,
        **fields,
    )
    return ExpenseChange(
        kind=ChangeKind.UPSERT,
        business_id=business_id,
        expense_id=expense_id,
        version=version,
        event_id=event_id,
        expense=expense,
    )


def delete(expense_id: str, version: int, *, business_id: str = "b1") -> ExpenseChange:
    return ExpenseChange(
        kind=ChangeKind.DELETE,
        business_id=business_id,
        expense_id=expense_id,
        version=version,
        event_id=f"evt-{next(_event_numbers)}",
    )
