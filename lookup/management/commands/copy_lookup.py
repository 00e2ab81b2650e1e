"""Copy the lookup store's live expenses from one adapter to the other, then compare counts."""

import itertools

from django.core.management.base import BaseCommand, CommandError

from lookup.domain import ApplyOutcome, Expense, ExpenseChange
from lookup.stores import LookupStoreError, build_lookup_store

STORE_NAMES = ("sql", "dynamodb")


class Command(BaseCommand):
    help = (
        "Copy every live expense (or one business's) from one lookup store to the other, keeping each "
        "expense's version, then check that both stores count the same live expenses. Every write is "
        "conditional on the version, so after an interruption running the same command again skips what "
        "was copied and continues; a newer version already in the target is kept. Deleted expenses "
        "(tombstones) are not copied."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="source", required=True, choices=STORE_NAMES, help="Store to read.")
        parser.add_argument("--to", dest="target", required=True, choices=STORE_NAMES, help="Store to write.")
        parser.add_argument("--business", default=None, help="Copy only this business_id (default: every business).")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Expenses written per apply_many call (default 500)."
        )

    def handle(self, *args, source, target, business, batch_size, **options):
        if source == target:
            raise CommandError(f"--from and --to are both {source!r}; choose two different stores.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}.")
        source_store = build_lookup_store(source)
        target_store = build_lookup_store(target)

        try:
            applied, skipped = self._copy(source_store, target_store, business, batch_size)
            source_count = source_store.count_expenses(business_id=business)
            target_count = target_store.count_expenses(business_id=business)
        except LookupStoreError as exc:
            raise CommandError(f"Copy failed: {exc}. Run the same command again to continue.") from exc

        scope = f"business {business}" if business else "all businesses"
        self.stdout.write(f"Copied {applied} expenses, skipped {skipped} already up to date ({scope}).")
        if source_count != target_count:
            raise CommandError(
                f"Count mismatch after copy ({scope}): {source} has {source_count} live expenses, {target} has "
                f"{target_count}. The target may hold expenses the source does not, or writes reached the source "
                "during the copy; run the command again, or compare the businesses one by one with --business."
            )
        self.stdout.write(f"Verified: both stores hold {source_count} live expenses ({scope}).")

    def _copy(self, source_store, target_store, business, batch_size) -> tuple[int, int]:
        applied = skipped = 0
        expenses = source_store.iter_expenses(business_id=business)
        while batch := list(itertools.islice(expenses, batch_size)):
            outcomes = target_store.apply_many([_upsert(expense) for expense in batch])
            applied += outcomes.count(ApplyOutcome.APPLIED)
            skipped += outcomes.count(ApplyOutcome.STALE)
            self.stdout.write(f"  {applied + skipped} expenses read", ending="\r")
        return applied, skipped


def _upsert(expense: Expense) -> ExpenseChange:
    return ExpenseChange.upsert(expense)
