"""Synthetic training data: small, separable expenses that train a model in well under a second."""

import datetime
import itertools
import random
from decimal import Decimal

from lookup.domain import ChangeKind, Expense, ExpenseChange
from lookup.normalisation import supplier_key
from mlops.training import TrainingRow

# Each category has its own suppliers, descriptions and amount range, so a model learns it from
# a few dozen rows.
CATEGORY_PROFILES = {
    "Travel": (["Trainline", "National Rail", "Uber", "Addison Lee"], ["train ticket", "taxi to client"], (20, 200)),
    "Meals": (["Costa Coffee", "Pret A Manger", "Greggs", "Nandos"], ["team lunch", "coffee"], (3, 60)),
    "Office supplies": (["Staples", "Viking Direct", "Ryman"], ["printer paper", "toner"], (10, 150)),
    "Software": (["Microsoft", "Adobe Systems", "Atlassian"], ["licence renewal", "subscription"], (100, 900)),
    "Fuel": (["Shell", "BP Connect", "Esso"], ["diesel", "unleaded"], (40, 120)),
}
START_DATE = datetime.date(2024, 1, 1)


def synthetic_records(
    count: int, *, businesses: tuple[str, ...] = ("b1", "b2"), seed: int = 7
) -> list[tuple[dict, str, datetime.date]]:
    """Return count (record, category, date) triples, cycling through categories and businesses.

    Dates increase by one day every len(businesses) rows, so every business has the same range.
    """
    rng = random.Random(seed)
    categories = itertools.cycle(CATEGORY_PROFILES)
    result = []
    for index in range(count):
        category = next(categories)
        suppliers, descriptions, (low, high) = CATEGORY_PROFILES[category]
        record = {
            "business_id": businesses[index % len(businesses)],
            "supplier": f"{rng.choice(suppliers)} {rng.randint(1, 99):02d}",
            "description": rng.choice(descriptions),
            "amount": str(Decimal(rng.randint(low * 100, high * 100)) / 100),
            "currency": "GBP",
            "payment_method": "card",
            "merchant_category": "",
            "department": "",
        }
        result.append((record, category, START_DATE + datetime.timedelta(days=index // len(businesses))))
    return result


def synthetic_rows(count: int, **options) -> list[TrainingRow]:
    """Return count training rows from synthetic_records."""
    return [
        TrainingRow(record=record, category=category, date=date)
        for record, category, date in synthetic_records(count, **options)
    ]


def expense_change(*, expense_id: str, record: dict, category: str, date: datetime.date) -> ExpenseChange:
    """Return an upsert of version 1 that stores a synthetic record in the lookup store."""
    expense = Expense(
        business_id=record["business_id"],
        expense_id=expense_id,
        version=1,
        supplier=record["supplier"],
        supplier_key=supplier_key(record["supplier"]),
        category=category,
        amount=Decimal(record["amount"]),
        currency=record["currency"],
        date=date,
        description=record["description"],
        payment_method=record["payment_method"],
        source_event_id=f"synthetic-{expense_id}",
    )
    return ExpenseChange(
        kind=ChangeKind.UPSERT,
        business_id=expense.business_id,
        expense_id=expense_id,
        version=1,
        event_id=expense.source_event_id,
        expense=expense,
    )
