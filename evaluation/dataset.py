"""Labelled expense files: reading, date order, the model's training cut and the service's inputs."""

import collections
import csv
import datetime
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from lookup.domain import Expense
from lookup.normalisation import supplier_key
from mlops.features import FEATURE_SCHEMA

# Columns every labelled file must have. The shared data README describes them.
REQUIRED_COLUMNS = ("business_id", "expense_id", "date", "supplier", "amount", "currency", "category")
# The fields the service sends to the model (categorisation.services._model_record).
RECORD_FIELDS = FEATURE_SCHEMA
# Share of each business's rows, earliest first, on which the model and the text baseline are trained.
TRAIN_FRACTION = 0.6


class DatasetError(Exception):
    """The file cannot be replayed, and the message names the file, the row and the value."""


@dataclass(frozen=True)
class ReplayRow:
    """One labelled expense in replay order; `evaluated` is False for the model's training part."""

    business_id: str
    expense_id: str
    date: datetime.date
    supplier: str
    supplier_key: str
    amount: Decimal
    department: str
    category: str
    record: dict
    evaluated: bool

    def expense(self) -> Expense:
        """Return the expense as the lookup store stores it after its `expense.created` event (version 1)."""
        return Expense(
            business_id=self.business_id,
            expense_id=self.expense_id,
            version=1,
            supplier=self.supplier,
            supplier_key=self.supplier_key,
            category=self.category,
            amount=self.amount,
            currency=self.record["currency"],
            date=self.date,
            description=self.record["description"],
            payment_method=self.record["payment_method"],
            merchant_category=self.record["merchant_category"],
            department=self.department,
        )


def read_rows(path: Path, *, limit_per_business: int | None = None) -> list[ReplayRow]:
    """Read a labelled CSV file and return its rows in replay order, each marked training or evaluated.

    Each business's rows are ordered by (date, expense_id). With limit_per_business, only each
    business's earliest rows are kept. The earliest TRAIN_FRACTION of each business's kept rows
    is the training part. The result is ordered by (date, expense_id) across businesses.
    Raises DatasetError for a missing column or an invalid date or amount.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing columns {missing}. A labelled file needs {list(REQUIRED_COLUMNS)}.")
        raw = [_parse(path, line, row) for line, row in enumerate(reader, start=2)]

    by_business = collections.defaultdict(list)
    for date, row in raw:
        by_business[row["business_id"]].append((date, row))

    rows = []
    for business_rows in by_business.values():
        business_rows.sort(key=lambda item: (item[0], item[1]["expense_id"]))
        if limit_per_business is not None:
            business_rows = business_rows[:limit_per_business]
        cut = int(len(business_rows) * TRAIN_FRACTION)
        rows += [_replay_row(date, row, evaluated=index >= cut) for index, (date, row) in enumerate(business_rows)]
    rows.sort(key=lambda row: (row.date, row.expense_id))
    return rows


def _parse(path: Path, line: int, row: dict) -> tuple[datetime.date, dict]:
    try:
        date = datetime.date.fromisoformat(row["date"])
    except ValueError:
        raise DatasetError(f"{path}, line {line}: invalid date {row['date']!r}, expected YYYY-MM-DD.") from None
    try:
        amount = Decimal(row["amount"])
    except InvalidOperation:
        raise DatasetError(f"{path}, line {line}: invalid amount {row['amount']!r}, expected a decimal.") from None
    if not amount.is_finite():
        raise DatasetError(f"{path}, line {line}: invalid amount {row['amount']!r}, expected a finite decimal.")
    if not row["supplier"].strip() or not row["category"].strip():
        raise DatasetError(f"{path}, line {line}: the supplier and the category must not be blank.")
    return date, row


def _replay_row(date: datetime.date, row: dict, *, evaluated: bool) -> ReplayRow:
    return ReplayRow(
        business_id=row["business_id"],
        expense_id=row["expense_id"],
        date=date,
        supplier=row["supplier"],
        supplier_key=supplier_key(row["supplier"]),
        amount=Decimal(row["amount"]),
        department=row.get("department") or "",
        category=row["category"],
        record={name: row.get(name) or "" for name in RECORD_FIELDS},
        evaluated=evaluated,
    )
