"""The interface every lookup store adapter implements."""

import abc
from collections.abc import Iterable, Iterator

from lookup.domain import ApplyOutcome, Expense, ExpenseChange


class LookupStoreError(Exception):
    """A store operation failed and retrying will not help."""


class LookupStoreUnavailable(LookupStoreError):
    """The store could not be reached or throttled the call; retrying later may succeed."""


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
    def similar_expenses(self, *, business_id: str, supplier_key: str, limit: int) -> list[Expense]:
        """Return the business's live expenses with this supplier key, most recent first."""

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
