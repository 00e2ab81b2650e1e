"""Plain data types of the lookup, shared by every store adapter."""

import datetime
import enum
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Expense:
    """A business's categorised expense as the lookup store keeps it."""

    business_id: str
    expense_id: str
    version: int
    supplier: str
    supplier_key: str
    category: str
    amount: Decimal | None
    currency: str
    date: datetime.date | None
    description: str = ""
    vat_amount: Decimal | None = None
    payment_method: str = ""
    merchant_category: str = ""
    department: str = ""
    deleted: bool = False
    source_event_id: str = ""
    learned_at: datetime.datetime | None = None


class ChangeKind(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


@dataclass(frozen=True)
class ExpenseChange:
    """One versioned change to apply: an upsert carries the whole expense, a delete only ids."""

    kind: ChangeKind
    business_id: str
    expense_id: str
    version: int
    event_id: str
    expense: Expense | None = None

    @classmethod
    def upsert(cls, expense: Expense) -> "ExpenseChange":
        """Build the upsert of an expense, keyed and versioned by the expense itself."""
        return cls(
            kind=ChangeKind.UPSERT,
            business_id=expense.business_id,
            expense_id=expense.expense_id,
            version=expense.version,
            event_id=expense.source_event_id,
            expense=expense,
        )


class ApplyOutcome(enum.StrEnum):
    APPLIED = "applied"
    # The store already holds this or a newer version of the expense; nothing changed.
    STALE = "stale"
