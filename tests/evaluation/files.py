"""Small labelled CSV files in the shared data's column layout, for replay tests."""

import csv
import datetime
from pathlib import Path

COLUMNS = (
    "business_id",
    "expense_id",
    "date",
    "supplier",
    "description",
    "department",
    "merchant_category",
    "amount",
    "currency",
    "payment_method",
    "category",
)
START_DATE = datetime.date(2024, 1, 1)


def expense_row(business_id: str, number: int, *, supplier: str, category: str, day: int | None = None, **fields):
    """Return one CSV row; the date is START_DATE plus `day` days (default: the row number)."""
    return {
        "business_id": business_id,
        "expense_id": f"{business_id}-{number:07d}",
        "date": (START_DATE + datetime.timedelta(days=number if day is None else day)).isoformat(),
        "supplier": supplier,
        "description": fields.get("description", ""),
        "department": fields.get("department", ""),
        "merchant_category": fields.get("merchant_category", ""),
        "amount": fields.get("amount", "25.00"),
        "currency": "GBP",
        "payment_method": "card",
        "category": category,
    }


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
