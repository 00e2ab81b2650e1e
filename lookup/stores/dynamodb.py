"""The lookup store on DynamoDB: the production adapter.

The key schema is described in lookup/stores/dynamodb_table.py. Every write is conditional on
the expense's version, so replayed and older events are no-ops and two workers racing on one
expense cannot both win. Amounts are DynamoDB numbers written from their Decimal string and read
back as Decimal, never through float.

`apply` writes one PutItem. `apply_many` sends the same conditional puts in TransactWriteItems
calls, because one call of up to 100 puts costs the client far less CPU than 100 PutItem calls.
A batch that comes down to one put still goes as a PutItem. DynamoDB's limits for one call (API
reference, TransactWriteItems): at most 100 actions, at most 4 MB of items in total, and no two
actions on the same item. The store needs no atomicity here, so a call cancelled by a failed
condition is sent again without the stale puts.

NOTE: a transactional write costs twice the write capacity of a PutItem (2 write request units
per KB on on-demand tables), so apply_many doubles the write bill of the items it writes in
transactions. DYNAMODB_TRANSACTIONAL_WRITES=false sends one PutItem per expense instead, at
about ten times the worker's CPU per event.
"""

import datetime
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from botocore.client import BaseClient
from django.utils import timezone

from lookup.aws import dynamodb_client, translated_errors
from lookup.domain import ApplyOutcome, ChangeKind, Expense, ExpenseChange
from lookup.stores.base import (
    LookupStore,
    LookupStoreError,
    LookupStoreUnavailable,
    RekeyOutcome,
    SupplierKeyChange,
)
from lookup.stores.dynamodb_table import (
    EXPENSE_SORT_PREFIX,
    PARTITION_KEY,
    SORT_KEY,
    SUPPLIER_INDEX,
    SUPPLIER_INDEX_PARTITION_KEY,
    SUPPLIER_INDEX_SORT_KEY,
    describe_table,
)

logger = logging.getLogger(__name__)

# Attributes an expense item carries besides its keys. Several ("date", "name", "status") are
# DynamoDB reserved words, so every expression names attributes through ExpressionAttributeNames.
STRING_ATTRIBUTES = (
    "supplier",
    "supplier_key",
    "category",
    "currency",
    "description",
    "payment_method",
    "merchant_category",
    "department",
)
READ_ATTRIBUTES = (
    PARTITION_KEY,
    SORT_KEY,
    "version",
    "deleted",
    "amount",
    "vat_amount",
    "date",
    "source_event_id",
    "learned_at",
    *STRING_ATTRIBUTES,
)
ATTRIBUTE_NAMES = {f"#{name}": name for name in READ_ATTRIBUTES}
PROJECTION = ", ".join(ATTRIBUTE_NAMES)

# Index sort key of an expense without a date: sorts after every real date in a descending read.
MISSING_DATE = "0000-00-00"
VERSION_DIGITS = 20

# apply_many: conditional puts in TransactWriteItems calls (DynamoDB allows 100 actions and 4 MB of
# items per call), several calls at once. The byte budget stays under 4 MB because item sizes are
# estimated. rekey_many: one UpdateItem per change on the same threads.
TRANSACTION_MAX_ITEMS = 100
TRANSACTION_MAX_BYTES = 3_500_000
WRITE_THREADS = 8
# Rounds of retry for writes that were throttled, in conflict with another transaction, or failed on
# a 5xx or connection error even after botocore's own retries.
APPLY_MANY_MAX_ROUNDS = 5
APPLY_MANY_BASE_DELAY_SECONDS = 0.1

# CancellationReasons codes of a cancelled transaction: "None" marks a put that failed nothing, and
# these mark a put that may succeed later. Any other code (ValidationError, for one) is permanent.
CONDITION_FAILED = "ConditionalCheckFailed"
NOT_A_CAUSE = "None"
TRANSIENT_CANCELLATION_CODES = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
PUT_CONDITION = "attribute_not_exists(#PK) OR #version < :version"

# list_expenses: Query calls one page may take to read past tombstones before it returns short.
LIST_MAX_QUERIES = 5

# Attribute names, numbers, the boolean and the date and index sort key of one item take well under
# this many bytes.
ITEM_SIZE_ALLOWANCE = 1024


class DynamoDBLookupStore(LookupStore):
    """Versioned expenses in one DynamoDB table, one item per expense."""

    name = "dynamodb"

    def __init__(self, *, table_name: str, region: str, transactional_writes: bool = True):
        self.table_name = table_name
        self.region = region
        self.transactional_writes = transactional_writes

    @property
    def client(self) -> BaseClient:
        return dynamodb_client(self.region)

    def apply(self, change: ExpenseChange) -> ApplyOutcome:
        with translated_errors("PutItem", business_id=change.business_id, expense_id=change.expense_id):
            try:
                self.client.put_item(**self._conditional_put(change))
            except self.client.exceptions.ConditionalCheckFailedException:
                return ApplyOutcome.STALE
        return ApplyOutcome.APPLIED

    def apply_many(self, changes: Iterable[ExpenseChange]) -> list[ApplyOutcome]:
        """Apply changes with conditional puts in transactions; return one outcome per change, in order.

        Only the highest version of each expense is written (the first of equal versions), so a
        change superseded by a newer one in the same call returns STALE even when it was newer
        than the stored item. Throttled, conflicting or unreachable writes are retried in up to
        APPLY_MANY_MAX_ROUNDS rounds with jittered backoff. If any remain, LookupStoreUnavailable
        names them, and the writes that succeeded stay applied.
        """
        changes = list(changes)
        outcomes = [ApplyOutcome.STALE] * len(changes)

        put_alone = _one_by_one(self.apply, changes, outcomes)

        def write(indexes: list[int]) -> list[int]:
            if len(indexes) > 1:
                return self._transact_puts(changes, indexes, outcomes)
            # A lone put goes without a transaction, at half the write capacity.
            return put_alone(indexes)

        def split(indexes: list[int]) -> list[list[int]]:
            if not self.transactional_writes:
                return [[index] for index in indexes]
            return _transactions(changes, indexes)

        _write_with_retries(write, split, changes, _latest_change_per_expense(changes))
        return outcomes

    def _conditional_put(self, change: ExpenseChange) -> dict:
        """Return the PutItem parameters that write the change unless the stored version is not older."""
        return {
            "TableName": self.table_name,
            "Item": _item(change, learned_at=timezone.now()),
            "ConditionExpression": PUT_CONDITION,
            "ExpressionAttributeNames": {"#PK": PARTITION_KEY, "#version": "version"},
            "ExpressionAttributeValues": {":version": {"N": str(change.version)}},
        }

    def _transact_puts(self, changes: list[ExpenseChange], indexes: list[int], outcomes: list) -> list[int]:
        """Write the changes at these indexes in one TransactWriteItems call; return the indexes to retry.

        A failed condition cancels the whole call, and CancellationReasons lists one code per put.
        The stale puts get STALE, and the rest are sent again in a new call at once. Each resend
        drops at least one put, so the loop ends. Puts that were throttled or in conflict with
        another transaction are returned for a later round.
        """
        retry = []
        while indexes:
            try:
                reasons = self._transact_write([{"Put": self._conditional_put(changes[i])} for i in indexes])
            except LookupStoreUnavailable:
                return retry + indexes
            if reasons is None:
                for index in indexes:
                    outcomes[index] = ApplyOutcome.APPLIED
                return retry

            resend = []
            for index, code in zip(indexes, reasons, strict=True):
                if code == NOT_A_CAUSE:
                    resend.append(index)
                elif code == CONDITION_FAILED:
                    outcomes[index] = ApplyOutcome.STALE
                elif code in TRANSIENT_CANCELLATION_CODES:
                    retry.append(index)
                else:
                    change = changes[index]
                    raise LookupStoreError(
                        f"DynamoDB TransactWriteItems rejected the put of {change.business_id}/{change.expense_id}: "
                        f"{code}."
                    )
            if len(resend) == len(indexes):
                # No put named a cause, so sending them again at once could repeat the cancellation.
                return retry + resend
            indexes = resend
        return retry

    def _transact_write(self, actions: list[dict]) -> list[str] | None:
        """Send one TransactWriteItems call; return None if it committed, else one cancellation code per action."""
        first = actions[0]["Put"]["Item"]
        business_id = first[PARTITION_KEY]["S"]
        with translated_errors("TransactWriteItems", business_id=business_id):
            try:
                self.client.transact_write_items(TransactItems=actions)
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) != len(actions):
                    raise LookupStoreError(
                        f"DynamoDB cancelled a TransactWriteItems call of {len(actions)} puts with "
                        f"{len(reasons)} cancellation reasons: {exc}"
                    ) from exc
                codes = [reason.get("Code", "") for reason in reasons]
                if any(code in TRANSIENT_CANCELLATION_CODES for code in codes):
                    logger.warning(
                        "DynamoDB TransactWriteItems cancelled, retry later",
                        extra={"business_id": business_id, "puts": len(actions), "reasons": sorted(set(codes))},
                    )
                return codes
        return None

    def rekey(self, change: SupplierKeyChange) -> RekeyOutcome:
        """Update the key and the supplier index partition key in one UpdateItem, conditional on the version."""
        with translated_errors("UpdateItem", business_id=change.business_id, expense_id=change.expense_id):
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key=_key(change.business_id, change.expense_id),
                    UpdateExpression="SET #supplier_key = :key, #index_pk = :index_pk",
                    ConditionExpression="#version = :version AND #deleted = :live AND #supplier_key <> :key",
                    ExpressionAttributeNames={
                        "#supplier_key": "supplier_key",
                        "#index_pk": SUPPLIER_INDEX_PARTITION_KEY,
                        "#version": "version",
                        "#deleted": "deleted",
                    },
                    ExpressionAttributeValues={
                        ":key": {"S": change.supplier_key},
                        ":index_pk": {"S": _supplier_partition(change.business_id, change.supplier_key)},
                        ":version": {"N": str(change.version)},
                        ":live": {"BOOL": False},
                    },
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                return self._unwritten_rekey_outcome(change)
        return RekeyOutcome.REKEYED

    def _unwritten_rekey_outcome(self, change: SupplierKeyChange) -> RekeyOutcome:
        # A failed condition does not say which part failed, so a consistent read distinguishes an
        # expense that already carries the key from one changed, deleted or never stored.
        stored = self.get_expense(business_id=change.business_id, expense_id=change.expense_id)
        if stored is None or stored.deleted or stored.version != change.version:
            return RekeyOutcome.STALE
        if stored.supplier_key == change.supplier_key:
            return RekeyOutcome.CURRENT
        # Another re-key to a different key ran between the update and the read.
        return RekeyOutcome.STALE

    def rekey_many(self, changes: Iterable[SupplierKeyChange]) -> list[RekeyOutcome]:
        """Re-key expenses with concurrent conditional updates; return one outcome per change, in order.

        Throttled or unreachable writes are retried like apply_many's. If any remain,
        LookupStoreUnavailable names them, and the writes that succeeded stay applied.
        """
        changes = list(changes)
        outcomes = [RekeyOutcome.STALE] * len(changes)

        def split(indexes: list[int]) -> list[list[int]]:
            return [[index] for index in indexes]

        _write_with_retries(_one_by_one(self.rekey, changes, outcomes), split, changes, list(range(len(changes))))
        return outcomes

    def similar_expenses(self, *, business_id: str, supplier_key: str, limit: int) -> list[Expense]:
        """Return the business's live expenses with this supplier key, newest date first.

        One Query on the supplier index, following LastEvaluatedKey until `limit` items.
        NOTE: reads of a global secondary index are eventually consistent, so on DynamoDB an
        expense written a moment ago may be missing for a short time.
        """
        if limit <= 0:
            return []
        request = {
            "TableName": self.table_name,
            "IndexName": SUPPLIER_INDEX,
            "KeyConditionExpression": "#index_pk = :index_pk",
            "ExpressionAttributeNames": ATTRIBUTE_NAMES | {"#index_pk": SUPPLIER_INDEX_PARTITION_KEY},
            "ExpressionAttributeValues": {":index_pk": {"S": _supplier_partition(business_id, supplier_key)}},
            "ProjectionExpression": PROJECTION,
            "ScanIndexForward": False,
        }
        expenses = []
        with translated_errors("Query", business_id=business_id):
            while len(expenses) < limit:
                page = self.client.query(**request, Limit=limit - len(expenses))
                expenses += [_expense(item) for item in page["Items"]]
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return expenses

    def get_expense(self, *, business_id: str, expense_id: str) -> Expense | None:
        with translated_errors("GetItem", business_id=business_id, expense_id=expense_id):
            response = self.client.get_item(
                TableName=self.table_name,
                Key=_key(business_id, expense_id),
                ProjectionExpression=PROJECTION,
                ExpressionAttributeNames=ATTRIBUTE_NAMES,
                ConsistentRead=True,
            )
        item = response.get("Item")
        return _expense(item) if item else None

    def iter_expenses(self, *, business_id: str | None = None) -> Iterator[Expense]:
        """Yield live expenses from a paginated Scan, or a Query of one business's partition."""
        operation, request = self._live_items_request(business_id)
        request["ProjectionExpression"] = PROJECTION
        request["ExpressionAttributeNames"] |= ATTRIBUTE_NAMES
        with translated_errors(operation, business_id=business_id or ""):
            for page in self.client.get_paginator(operation).paginate(**request):
                for item in page["Items"]:
                    yield _expense(item)

    def count_expenses(self, *, business_id: str | None = None) -> int:
        """Count live expenses with a paginated Select=COUNT: it reads the whole table or partition."""
        operation, request = self._live_items_request(business_id)
        request |= {"Select": "COUNT"}
        with translated_errors(operation, business_id=business_id or ""):
            return sum(page["Count"] for page in self.client.get_paginator(operation).paginate(**request))

    def list_expenses(
        self, *, business_id: str, after: str | None = None, limit: int
    ) -> tuple[list[Expense], str | None]:
        """Return one page by expense id from a Query of the business's partition.

        The filter on `deleted` applies after DynamoDB reads the items, so a run of tombstones
        can use up a Query's Limit. After LIST_MAX_QUERIES calls the page returns short, with a
        cursor at the last item read.
        """
        if limit <= 0:
            return [], after
        operation, request = self._live_items_request(business_id)
        request["ProjectionExpression"] = PROJECTION
        request["ExpressionAttributeNames"] |= ATTRIBUTE_NAMES
        if after is not None:
            request["ExclusiveStartKey"] = _key(business_id, after)

        expenses: list[Expense] = []
        last_key = None
        with translated_errors(operation, business_id=business_id):
            for _ in range(LIST_MAX_QUERIES):
                # Reading one item beyond the page shows whether a next page exists.
                page = self.client.query(**request, Limit=limit + 1 - len(expenses))
                expenses += [_expense(item) for item in page["Items"]]
                last_key = page.get("LastEvaluatedKey")
                if len(expenses) > limit or last_key is None:
                    break
                request["ExclusiveStartKey"] = last_key

        if len(expenses) > limit:
            return expenses[:limit], expenses[limit - 1].expense_id
        if last_key is not None:
            return expenses, last_key[SORT_KEY]["S"].removeprefix(EXPENSE_SORT_PREFIX)
        return expenses, None

    def _live_items_request(self, business_id: str | None) -> tuple[str, dict]:
        request = {
            "TableName": self.table_name,
            "FilterExpression": "#deleted = :deleted",
            "ExpressionAttributeNames": {"#deleted": "deleted"},
            "ExpressionAttributeValues": {":deleted": {"BOOL": False}},
            # Strongly consistent, so a count right after a write includes it.
            "ConsistentRead": True,
        }
        if business_id is None:
            return "scan", request
        request["KeyConditionExpression"] = "#PK = :business AND begins_with(#SK, :expense_prefix)"
        request["ExpressionAttributeNames"] |= {"#PK": PARTITION_KEY, "#SK": SORT_KEY}
        request["ExpressionAttributeValues"] |= {
            ":business": {"S": business_id},
            ":expense_prefix": {"S": EXPENSE_SORT_PREFIX},
        }
        return "query", request

    def check(self) -> None:
        try:
            description = describe_table(self.client, self.table_name)
        except LookupStoreUnavailable:
            raise
        except LookupStoreError as exc:
            raise LookupStoreUnavailable(str(exc)) from exc
        status = description.get("TableStatus")
        # An UPDATING table (capacity or index changes) still serves reads.
        if status not in ("ACTIVE", "UPDATING"):
            raise LookupStoreUnavailable(f"DynamoDB table {self.table_name} is {status}, not ACTIVE.")


def _write_with_retries(
    write: Callable[[list[int]], list[int]],
    split: Callable[[list[int]], list[list[int]]],
    changes: list,
    indexes: list[int],
) -> None:
    """Write the changes at these indexes, in the batches `split` makes, on concurrent threads.

    `write` stores each outcome and returns the indexes that were throttled or unreachable. Those
    are retried in up to APPLY_MANY_MAX_ROUNDS rounds with jittered backoff. If any remain,
    LookupStoreUnavailable names them.
    """
    pending = indexes
    for round_number in range(APPLY_MANY_MAX_ROUNDS):
        if round_number:
            time.sleep(random.uniform(0, APPLY_MANY_BASE_DELAY_SECONDS * 2**round_number))
        pending = _write_concurrently(write, split(pending))
        if not pending:
            return

    keys = ", ".join(f"{changes[i].business_id}/{changes[i].expense_id}" for i in pending[:10])
    logger.error(
        "DynamoDB writes still failing after %s rounds",
        APPLY_MANY_MAX_ROUNDS,
        extra={"unwritten": len(pending), "total": len(changes)},
    )
    raise LookupStoreUnavailable(
        f"{len(pending)} of {len(changes)} changes were not written after {APPLY_MANY_MAX_ROUNDS} rounds "
        f"of retries (first: {keys}); apply them again later."
    )


def _write_concurrently(write: Callable[[list[int]], list[int]], batches: list[list[int]]) -> list[int]:
    """Write the batches on up to WRITE_THREADS threads; return the indexes to retry."""
    if len(batches) == 1:
        return sorted(write(batches[0]))
    retry = []
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(batches))) as pool:
        for indexes in pool.map(write, batches):
            retry += indexes
    return sorted(retry)


def _one_by_one(write_one: Callable, changes: list, outcomes: list) -> Callable[[list[int]], list[int]]:
    """Return a writer of one-change batches that stores write_one's outcome, for _write_with_retries."""

    def write(indexes: list[int]) -> list[int]:
        [index] = indexes
        try:
            outcomes[index] = write_one(changes[index])
        except LookupStoreUnavailable:
            return indexes
        return []

    return write


def _transactions(changes: list[ExpenseChange], indexes: list[int]) -> list[list[int]]:
    """Split the indexes into batches within TRANSACTION_MAX_ITEMS puts and TRANSACTION_MAX_BYTES."""
    batches: list[list[int]] = []
    batch_bytes = 0
    for index in indexes:
        size = _estimated_size(changes[index])
        if not batches or len(batches[-1]) == TRANSACTION_MAX_ITEMS or batch_bytes + size > TRANSACTION_MAX_BYTES:
            batches.append([])
            batch_bytes = 0
        batches[-1].append(index)
        batch_bytes += size
    return batches


def _estimated_size(change: ExpenseChange) -> int:
    """Return an upper bound of the item's size in bytes.

    Every character counts 4 bytes, the most UTF-8 takes, and ITEM_SIZE_ALLOWANCE covers the
    attribute names and the values that are not free text.
    """
    texts = [change.business_id, change.expense_id, change.event_id]
    if change.expense is not None:
        texts += [getattr(change.expense, name) for name in STRING_ATTRIBUTES]
        # The supplier index partition key repeats the business id and the supplier key.
        texts += [change.business_id, change.expense.supplier_key]
    return ITEM_SIZE_ALLOWANCE + 4 * sum(len(text) for text in texts)


def _latest_change_per_expense(changes: list[ExpenseChange]) -> list[int]:
    """Return the indexes of the highest-version change of each expense; the first wins a tie."""
    latest: dict[tuple[str, str], int] = {}
    for index, change in enumerate(changes):
        key = (change.business_id, change.expense_id)
        if key not in latest or change.version > changes[latest[key]].version:
            latest[key] = index
    return sorted(latest.values())


def _key(business_id: str, expense_id: str) -> dict:
    return {PARTITION_KEY: {"S": business_id}, SORT_KEY: {"S": EXPENSE_SORT_PREFIX + expense_id}}


def _supplier_partition(business_id: str, supplier_key: str) -> str:
    # Escaping "%" and "#" in the business id keeps the first "#" the separator, so no other
    # business and supplier pair can produce the same index key.
    escaped = business_id.replace("%", "%25").replace("#", "%23")
    return f"{escaped}#{supplier_key}"


def _item(change: ExpenseChange, *, learned_at: datetime.datetime) -> dict:
    """Build the item for a change; a delete builds a tombstone without index keys."""
    item = _key(change.business_id, change.expense_id) | {
        "version": {"N": str(change.version)},
        "deleted": {"BOOL": change.kind == ChangeKind.DELETE},
        "source_event_id": {"S": change.event_id},
        "learned_at": {"S": learned_at.isoformat()},
    }
    if change.kind == ChangeKind.DELETE:
        return item

    expense = change.expense
    if expense is None:
        raise LookupStoreError(f"Upsert of {change.business_id}/{change.expense_id} carries no expense.")
    date_text = expense.date.isoformat() if expense.date else MISSING_DATE
    item |= {name: {"S": getattr(expense, name)} for name in STRING_ATTRIBUTES}
    item |= {
        SUPPLIER_INDEX_PARTITION_KEY: {"S": _supplier_partition(change.business_id, expense.supplier_key)},
        SUPPLIER_INDEX_SORT_KEY: {"S": f"{date_text}#{change.version:0{VERSION_DIGITS}d}"},
    }
    if expense.date is not None:
        item["date"] = {"S": date_text}
    for name in ("amount", "vat_amount"):
        value = getattr(expense, name)
        if value is not None:
            item[name] = {"N": _number_text(value, change=change, field=name)}
    return item


def _number_text(value: Decimal, *, change: ExpenseChange, field: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise LookupStoreError(
            f"Invalid {field} {value!r} for {change.business_id}/{change.expense_id}; expected a finite Decimal."
        )
    return str(value)


def _expense(item: dict) -> Expense:
    strings = {name: item[name]["S"] if name in item else "" for name in STRING_ATTRIBUTES}
    return Expense(
        business_id=item[PARTITION_KEY]["S"],
        expense_id=item[SORT_KEY]["S"].removeprefix(EXPENSE_SORT_PREFIX),
        version=int(item["version"]["N"]),
        amount=Decimal(item["amount"]["N"]) if "amount" in item else None,
        vat_amount=Decimal(item["vat_amount"]["N"]) if "vat_amount" in item else None,
        date=datetime.date.fromisoformat(item["date"]["S"]) if "date" in item else None,
        deleted=item["deleted"]["BOOL"],
        source_event_id=item["source_event_id"]["S"],
        learned_at=datetime.datetime.fromisoformat(item["learned_at"]["S"]),
        **strings,
    )
