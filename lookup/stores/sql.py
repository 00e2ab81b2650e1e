"""The lookup store on the Django database: the embedded default."""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from lookup.domain import ApplyOutcome, ChangeKind, Expense, ExpenseChange
from lookup.models import LookupExpense
from lookup.stores.base import (
    LookupStore,
    LookupStoreError,
    LookupStoreUnavailable,
    RekeyOutcome,
    SupplierKeyChange,
)

ITERATION_CHUNK_SIZE = 2000
_EXPENSE_FIELDS = tuple(field.name for field in dataclasses.fields(Expense))

Change = TypeVar("Change")
Outcome = TypeVar("Outcome")


class SqlLookupStore(LookupStore):
    name = "sql"

    def apply(self, change: ExpenseChange) -> ApplyOutcome:
        values = _row_values(change)
        with _translated_write_errors():
            return self._apply_values(change, values)

    def apply_many(self, changes: Iterable[ExpenseChange]) -> list[ApplyOutcome]:
        """Apply changes in order in one transaction: one commit for the batch, not one per change."""
        return _in_one_transaction(self.apply, changes)

    def _apply_values(self, change: ExpenseChange, values: dict) -> ApplyOutcome:
        # A conditional UPDATE is atomic in every backend, so two workers racing on one expense
        # cannot both win and an older version can never overwrite a newer one.
        keyed = LookupExpense.objects.filter(business_id=change.business_id, expense_id=change.expense_id)
        if keyed.filter(version__lt=change.version).update(**values):
            return ApplyOutcome.APPLIED
        if keyed.exists():
            return ApplyOutcome.STALE
        try:
            with transaction.atomic():
                LookupExpense.objects.create(business_id=change.business_id, expense_id=change.expense_id, **values)
            return ApplyOutcome.APPLIED
        except IntegrityError:
            # Another writer created the row between our check and insert: compare versions again.
            if keyed.filter(version__lt=change.version).update(**values):
                return ApplyOutcome.APPLIED
            return ApplyOutcome.STALE

    def rekey(self, change: SupplierKeyChange) -> RekeyOutcome:
        # One conditional UPDATE, so a newer version written since the read is never re-keyed.
        at_version = LookupExpense.objects.filter(
            business_id=change.business_id, expense_id=change.expense_id, version=change.version, deleted=False
        )
        with _translated_write_errors():
            if at_version.exclude(supplier_key=change.supplier_key).update(supplier_key=change.supplier_key):
                return RekeyOutcome.REKEYED
            if at_version.exists():
                return RekeyOutcome.CURRENT
        return RekeyOutcome.STALE

    def rekey_many(self, changes: Iterable[SupplierKeyChange]) -> list[RekeyOutcome]:
        """Re-key expenses in one transaction: one commit for the batch, not one per change."""
        return _in_one_transaction(self.rekey, changes)

    def similar_expenses(self, *, business_id: str, supplier_key: str, limit: int) -> list[Expense]:
        # Undated expenses last, as in the DynamoDB adapter: PostgreSQL puts NULL first in a descending sort.
        rows = LookupExpense.objects.filter(business_id=business_id, supplier_key=supplier_key, deleted=False).order_by(
            F("date").desc(nulls_last=True), "-version"
        )[:limit]
        return self._read(lambda: [_to_expense(values) for values in rows.values(*_EXPENSE_FIELDS)])

    def get_expense(self, *, business_id: str, expense_id: str) -> Expense | None:
        keyed = LookupExpense.objects.filter(business_id=business_id, expense_id=expense_id)
        values = self._read(lambda: keyed.values(*_EXPENSE_FIELDS).first())
        return _to_expense(values) if values else None

    def iter_expenses(self, *, business_id: str | None = None) -> Iterator[Expense]:
        rows = LookupExpense.objects.filter(deleted=False)
        if business_id is not None:
            rows = rows.filter(business_id=business_id)
        try:
            for values in rows.order_by("pk").values(*_EXPENSE_FIELDS).iterator(chunk_size=ITERATION_CHUNK_SIZE):
                yield _to_expense(values)
        except DatabaseError as exc:
            raise LookupStoreUnavailable(f"SQL lookup store unavailable: {exc}") from exc

    def list_expenses(
        self, *, business_id: str, after: str | None = None, limit: int
    ) -> tuple[list[Expense], str | None]:
        """Return one page by expense id: one query on the (business_id, expense_id) unique index."""
        if limit <= 0:
            return [], after
        rows = LookupExpense.objects.filter(business_id=business_id, deleted=False)
        if after is not None:
            rows = rows.filter(expense_id__gt=after)
        # Reading one row beyond the page shows whether a next page exists.
        page = rows.order_by("expense_id").values(*_EXPENSE_FIELDS)[: limit + 1]
        expenses = self._read(lambda: [_to_expense(values) for values in page])
        if len(expenses) <= limit:
            return expenses, None
        return expenses[:limit], expenses[limit - 1].expense_id

    def count_expenses(self, *, business_id: str | None = None) -> int:
        rows = LookupExpense.objects.filter(deleted=False)
        if business_id is not None:
            rows = rows.filter(business_id=business_id)
        return self._read(rows.count)

    def check(self) -> None:
        def ping():
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")

        self._read(ping)

    @staticmethod
    def _read(query):
        try:
            return query()
        except DatabaseError as exc:
            raise LookupStoreUnavailable(f"SQL lookup store unavailable: {exc}") from exc


@contextmanager
def _translated_write_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        raise LookupStoreUnavailable(f"SQL lookup store unavailable: {exc}") from exc
    except DatabaseError as exc:
        raise LookupStoreError(f"SQL lookup store rejected the write: {exc}") from exc


def _in_one_transaction(write: Callable[[Change], Outcome], changes: Iterable[Change]) -> list[Outcome]:
    try:
        with transaction.atomic():
            return [write(change) for change in changes]
    except OperationalError as exc:
        # Raised by the commit itself, after every write succeeded.
        raise LookupStoreUnavailable(f"SQL lookup store unavailable: {exc}") from exc


def _row_values(change: ExpenseChange) -> dict:
    base = {"version": change.version, "source_event_id": change.event_id, "learned_at": timezone.now()}
    if change.kind == ChangeKind.DELETE:
        # The tombstone keeps only ids and version, so a late, older upsert stays a no-op.
        return base | {
            "deleted": True,
            "supplier": "",
            "supplier_key": "",
            "category": "",
            "amount": "",
            "vat_amount": "",
            "currency": "",
            "date": None,
            "description": "",
            "payment_method": "",
            "merchant_category": "",
            "department": "",
        }
    expense = change.expense
    if expense is None:
        raise LookupStoreError(f"Upsert of {change.business_id}/{change.expense_id} carries no expense.")
    return base | {
        "deleted": False,
        "supplier": expense.supplier,
        "supplier_key": expense.supplier_key,
        "category": expense.category,
        "amount": _decimal_text(expense.amount),
        "vat_amount": _decimal_text(expense.vat_amount),
        "currency": expense.currency,
        "date": expense.date,
        "description": expense.description,
        "payment_method": expense.payment_method,
        "merchant_category": expense.merchant_category,
        "department": expense.department,
    }


def _decimal_text(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def _to_expense(values: dict) -> Expense:
    # Read as values, not model instances: a prediction reads up to LOOKUP_MAX_MATCHES rows.
    amounts = {name: Decimal(values[name]) if values[name] else None for name in ("amount", "vat_amount")}
    return Expense(**values | amounts)
