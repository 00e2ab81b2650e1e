"""The interface every lookup store adapter implements."""

import abc
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lookup.domain import ApplyOutcome, Expense, ExpenseChange


class LookupStoreError(Exception):
    """A store operation failed and retrying will not help."""


class LookupStoreUnavailable(LookupStoreError):
    """The store could not be reached or throttled the call; retrying later may succeed."""


@dataclass(frozen=True)
class SupplierKeyChange:
    """A new supplier key for the expense stored at `version`, as read before the change."""

    business_id: str
    expense_id: str
    version: int
    supplier_key: str


class RekeyOutcome(enum.StrEnum):
    REKEYED = "rekeyed"
    # The expense stored at that version already carries the key; nothing was written.
    CURRENT = "current"
    # The stored expense is not live at that version, because a newer upsert or a delete was
    # written after the read or the expense is unknown. Nothing was written.
    STALE = "stale"


class LookupStore(abc.ABC):
    """Versioned, per-business storage of categorised expenses."""

    name: str

    @abc.abstractmethod
    def apply(self, change: ExpenseChange) -> ApplyOutcome:
        """Apply one change if its version is newer than the stored one.

        An upsert or delete whose version is not above the stored version is a no-op (STALE), so
        replayed and reordered events converge. A delete keeps a tombstone with its version.
        """

    def apply_many(self, changes: Iterable[ExpenseChange]) -> list[ApplyOutcome]:
        """Apply changes in order; adapters may override this with a batched write."""
        return [self.apply(change) for change in changes]

    @abc.abstractmethod
    def rekey(self, change: SupplierKeyChange) -> RekeyOutcome:
        """Set the supplier key of the expense if the stored expense is still live at `change.version`.

        The version and every other field stay as they are, and the similar-expense query finds the
        expense under the new key from then on (on DynamoDB, once the index has caught up). The write
        is conditional on the stored version, so a newer version written since the read wins (STALE).
        Tombstones carry no key (STALE).
        """

    def rekey_many(self, changes: Iterable[SupplierKeyChange]) -> list[RekeyOutcome]:
        """Re-key expenses and return one outcome per change, in order.

        The changes must name distinct expenses. Adapters may override this with a batched write.
        """
        return [self.rekey(change) for change in changes]

    @abc.abstractmethod
    def similar_expenses(self, *, business_id: str, supplier_key: str, limit: int) -> list[Expense]:
        """Return the business's live expenses with this supplier key, most recent first."""

    def similar_expenses_many(
        self, *, keys: Iterable[tuple[str, str]], limit: int
    ) -> dict[tuple[str, str], list[Expense]]:
        """Return similar_expenses for each (business_id, supplier_key), keyed by that pair.

        Adapters may override this with one read for all keys.
        """
        return {
            (business_id, supplier_key): self.similar_expenses(
                business_id=business_id, supplier_key=supplier_key, limit=limit
            )
            for business_id, supplier_key in dict.fromkeys(keys)
        }

    @abc.abstractmethod
    def get_expense(self, *, business_id: str, expense_id: str) -> Expense | None:
        """Return one expense, a tombstone (deleted=True) included, or None if never seen."""

    @abc.abstractmethod
    def iter_expenses(self, *, business_id: str | None = None) -> Iterator[Expense]:
        """Yield every live expense, or one business's, in no particular order."""

    @abc.abstractmethod
    def count_expenses(self, *, business_id: str | None = None) -> int:
        """Return the number of live expenses, or one business's."""

    @abc.abstractmethod
    def list_expenses(
        self, *, business_id: str, after: str | None = None, limit: int
    ) -> tuple[list[Expense], str | None]:
        """Return one page of the business's live expenses, ordered by expense id, and a cursor.

        The page holds at most `limit` expenses whose ids sort after `after`. The cursor is the
        `after` of the next page, or None when no expense follows. A page may hold fewer than
        `limit` expenses even when the cursor is not None, because adapters bound how many
        tombstones one call reads past.
        """

    @abc.abstractmethod
    def check(self) -> None:
        """Raise LookupStoreUnavailable if the store cannot serve reads now."""
