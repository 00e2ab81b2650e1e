"""Recompute the supplier key of every stored expense and re-key those whose key changed."""

import collections
import itertools
from collections.abc import Iterator

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from lookup.normalisation import supplier_key
from lookup.stores import LookupStore, LookupStoreError, get_lookup_store
from lookup.stores.base import RekeyOutcome, SupplierKeyChange

# Expenses a dry run lists with their old and new keys; the rest are only counted.
MAX_LISTED_CHANGES = 10


class Command(BaseCommand):
    help = (
        "Recompute supplier_key(supplier) for every live expense of the configured lookup store (or one "
        "business's) and store the new key where it differs, keeping each expense's version, so the "
        "similar-expense query finds expenses stored before a change to supplier_key. Each write is "
        "conditional on the version that was read: an expense updated or deleted meanwhile is skipped, "
        "because the newer write carries its own key. Running the command again after an interruption "
        "re-keys only what is left."
    )

    def add_arguments(self, parser):
        parser.add_argument("--business", default=None, help="Re-key only this business_id (default: every business).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count and list the expenses to re-key, and write nothing."
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Changed keys written per rekey_many call (default 500)."
        )

    def handle(self, *args, business, dry_run, batch_size, **options):
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}.")
        store = get_lookup_store()

        counts = collections.Counter()
        changes = self._stale_keys(store, business, counts, list_examples=dry_run)
        try:
            while batch := list(itertools.islice(changes, batch_size)):
                if dry_run:
                    counts[RekeyOutcome.REKEYED] += len(batch)
                else:
                    counts.update(store.rekey_many(batch))
        except LookupStoreError as exc:
            raise CommandError(f"Re-keying failed: {exc}. Run the same command again to continue.") from exc

        self._report(counts, business=business, store=store, dry_run=dry_run)

    def _stale_keys(
        self, store: LookupStore, business: str | None, counts: collections.Counter, *, list_examples: bool
    ) -> Iterator[SupplierKeyChange]:
        """Yield a change for each live expense whose stored key is not supplier_key(supplier)."""
        listed = 0
        for expense in tqdm(store.iter_expenses(business_id=business), desc="Scanning", unit=" expenses", disable=None):
            counts["scanned"] += 1
            key = supplier_key(expense.supplier)
            if key == expense.supplier_key:
                counts[RekeyOutcome.CURRENT] += 1
                continue
            if list_examples and listed < MAX_LISTED_CHANGES:
                listed += 1
                self.stdout.write(
                    f"  {expense.business_id}/{expense.expense_id} {expense.supplier!r}: "
                    f"{expense.supplier_key!r} -> {key!r}"
                )
            yield SupplierKeyChange(
                business_id=expense.business_id,
                expense_id=expense.expense_id,
                version=expense.version,
                supplier_key=key,
            )

    def _report(self, counts: collections.Counter, *, business: str | None, store: LookupStore, dry_run: bool):
        scope = f"business {business}" if business else "all businesses"
        if dry_run:
            self.stdout.write(
                f"Dry run on the {store.name} store ({scope}), nothing written: scanned {counts['scanned']} "
                f"expenses, {counts[RekeyOutcome.REKEYED]} to re-key, {counts[RekeyOutcome.CURRENT]} already current."
            )
            return
        self.stdout.write(
            f"Scanned {counts['scanned']} expenses in the {store.name} store ({scope}): "
            f"re-keyed {counts[RekeyOutcome.REKEYED]}, {counts[RekeyOutcome.CURRENT]} already current, "
            f"skipped {counts[RekeyOutcome.STALE]} updated or deleted meanwhile."
        )
