"""The lookup store on the Django database: the embedded default."""

import dataclasses
import datetime
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
# Expenses per INSERT ... ON CONFLICT statement: 500 rows of 17 columns stay far below SQLite's
# limit of 32,766 parameters.
UPSERT_CHUNK_SIZE = 500
_UPSERT_COLUMNS = (
    "business_id",
    "expense_id",
    *(name for name in _EXPENSE_FIELDS if name not in ("business_id", "expense_id")),
)

# The similar-expenses read on PostgreSQL: one statement for any number of (business, supplier
# key) pairs. LATERAL reads each pair newest first from the partial index lookup_business_supplier_recent
# and stops at the limit, so a batch makes one round trip and each pair costs the same whatever its
# history. Its text is fixed: building the ORM query per call cost more CPU than running it.
# NOTE: it is not a prepared statement. Django leaves psycopg's prepare_threshold unset and binds
# parameters on the client; planning it takes about 0.2 ms in PostgreSQL.
# learned_at is read as integer microseconds since the Unix epoch: Django's timestamptz loader is
# Python code, and parsing 3,000 timestamps with it took 10 ms, three times the rest of the read.
# EXTRACT returns an exact numeric on PostgreSQL 14 and later.
_LEARNED_AT_MICROSECONDS = "(EXTRACT(EPOCH FROM recent.learned_at) * 1000000)::bigint"
_SIMILAR_COLUMNS = ", ".join(
    _LEARNED_AT_MICROSECONDS if name == "learned_at" else f"recent.{name}" for name in _EXPENSE_FIELDS
)
_SIMILAR_POSTGRESQL = f"""
SELECT {_SIMILAR_COLUMNS}
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS wanted(business_id, supplier_key, position)
CROSS JOIN LATERAL (
    SELECT * FROM lookup_lookupexpense AS stored
    WHERE stored.business_id = wanted.business_id AND stored.supplier_key = wanted.supplier_key AND NOT stored.deleted
    ORDER BY stored.date DESC NULLS LAST, stored.version DESC
    LIMIT %s
) AS recent
ORDER BY wanted.position, recent.date DESC NULLS LAST, recent.version DESC
"""

Change = TypeVar("Change")
Outcome = TypeVar("Outcome")


class SqlLookupStore(LookupStore):
    name = "sql"

    def apply(self, change: ExpenseChange) -> ApplyOutcome:
        values = _row_values(change)
        with _translated_write_errors():
            return self._apply_values(change, values)

    def apply_many(self, changes: Iterable[ExpenseChange]) -> list[ApplyOutcome]:
        """Apply changes in order in one transaction, with one read and one upsert per chunk of expenses.

        The outcomes are those of applying the changes one by one: a change is APPLIED when its
        version is newer than the stored one and every earlier change of the batch. Only each
        expense's newest applied change is written. The upsert's WHERE clause keeps a newer row that
        another writer stored meanwhile, and then that expense's changes are STALE.
        """
        changes = list(changes)
        try:
            with transaction.atomic():
                outcomes = []
                for start in range(0, len(changes), UPSERT_CHUNK_SIZE):
                    outcomes += self._apply_chunk(changes[start : start + UPSERT_CHUNK_SIZE])
                return outcomes
        except OperationalError as exc:
            raise LookupStoreUnavailable(f"SQL lookup store unavailable: {exc}") from exc
        except DatabaseError as exc:
            raise LookupStoreError(f"SQL lookup store rejected the write: {exc}") from exc

    def _apply_chunk(self, changes: list[ExpenseChange]) -> list[ApplyOutcome]:
        keys = {(change.business_id, change.expense_id) for change in changes}
        rows = LookupExpense.objects.filter(
            business_id__in={key[0] for key in keys}, expense_id__in={key[1] for key in keys}
        ).values_list("business_id", "expense_id", "version")
        stored = {(business_id, expense_id): version for business_id, expense_id, version in rows}

        outcomes, newest = [], {}
        for position, change in enumerate(changes):
            key = (change.business_id, change.expense_id)
            if key not in stored or change.version > stored[key]:
                stored[key] = change.version
                newest[key] = position
                outcomes.append(ApplyOutcome.APPLIED)
            else:
                outcomes.append(ApplyOutcome.STALE)
        written = _upsert(sorted(newest.items()), changes)
        for position, change in enumerate(changes):
            key = (change.business_id, change.expense_id)
            if outcomes[position] == ApplyOutcome.APPLIED and key not in written:
                outcomes[position] = ApplyOutcome.STALE
        return outcomes

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
        if connection.vendor == "postgresql":
            return self.similar_expenses_many(keys=[(business_id, supplier_key)], limit=limit)[
                (business_id, supplier_key)
            ]
        # Undated expenses last, as in the DynamoDB adapter: PostgreSQL puts NULL first in a descending sort.
        rows = LookupExpense.objects.filter(business_id=business_id, supplier_key=supplier_key, deleted=False).order_by(
            F("date").desc(nulls_last=True), "-version"
        )[:limit]
        return self._read(lambda: [_to_expense(values) for values in rows.values(*_EXPENSE_FIELDS)])

    def similar_expenses_many(
        self, *, keys: Iterable[tuple[str, str]], limit: int
    ) -> dict[tuple[str, str], list[Expense]]:
        """Read all keys in one query on PostgreSQL, and one query per key elsewhere (SQLite has no LATERAL)."""
        keys = list(dict.fromkeys(keys))
        if connection.vendor != "postgresql":
            return super().similar_expenses_many(keys=keys, limit=limit)
        found = {key: [] for key in keys}
        if not keys or limit <= 0:
            return found

        def read():
            with connection.cursor() as cursor:
                cursor.execute(_SIMILAR_POSTGRESQL, [[key[0] for key in keys], [key[1] for key in keys], limit])
                return cursor.fetchall()

        for row in self._read(read):
            expense = _similar_row_to_expense(row)
            found[(expense.business_id, expense.supplier_key)].append(expense)
        return found

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


def _upsert(newest: list[tuple[tuple[str, str], int]], changes: list[ExpenseChange]) -> set[tuple[str, str]]:
    """Insert or update each expense's newest change unless the row has a newer version; return the keys written."""
    if not newest:
        return set()
    fields = [LookupExpense._meta.get_field(name) for name in _UPSERT_COLUMNS]
    rows, parameters = [], []
    for (business_id, expense_id), position in newest:
        values = _row_values(changes[position]) | {"business_id": business_id, "expense_id": expense_id}
        parameters += [field.get_db_prep_save(values[field.name], connection) for field in fields]
        rows.append("(" + ", ".join(["%s"] * len(fields)) + ")")
    table = connection.ops.quote_name(LookupExpense._meta.db_table)
    columns = [connection.ops.quote_name(field.column) for field in fields]
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[2:])
    version = connection.ops.quote_name("version")
    business_id, expense_id = columns[:2]
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(rows)} "
        f"ON CONFLICT ({business_id}, {expense_id}) DO UPDATE SET {updates} "
        f"WHERE {table}.{version} < excluded.{version} RETURNING {business_id}, {expense_id}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        return {(row[0], row[1]) for row in cursor.fetchall()}


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


_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_AMOUNT_POSITIONS = (_EXPENSE_FIELDS.index("amount"), _EXPENSE_FIELDS.index("vat_amount"))
_LEARNED_AT_POSITION = _EXPENSE_FIELDS.index("learned_at")


def _similar_row_to_expense(row: tuple) -> Expense:
    """Return the Expense of a _SIMILAR_POSTGRESQL row, whose columns are the Expense fields in order.

    learned_at comes as microseconds and becomes an aware UTC datetime: what Django's loader returns
    with USE_TZ on and no TIME_ZONE for the database, as the project's settings have it.
    """
    values = list(row)
    for position in _AMOUNT_POSITIONS:
        values[position] = Decimal(values[position]) if values[position] else None
    microseconds = values[_LEARNED_AT_POSITION]
    if microseconds is not None:
        values[_LEARNED_AT_POSITION] = _UNIX_EPOCH + datetime.timedelta(microseconds=microseconds)
    return Expense(*values)


def _to_expense(values: dict) -> Expense:
    # Read as values, not model instances: a prediction reads up to LOOKUP_MAX_MATCHES rows.
    amounts = {name: Decimal(values[name]) if values[name] else None for name in ("amount", "vat_amount")}
    return Expense(**values | amounts)
