"""Import categorised expenses from a CSV file by publishing expense.created events."""

import collections
import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from lookup import services
from lookup.serializers import EventSerializer

EXPENSE_COLUMNS = (
    "business_id",
    "expense_id",
    "date",
    "supplier",
    "description",
    "amount",
    "vat_amount",
    "currency",
    "payment_method",
    "merchant_category",
    "department",
    "category",
)
REQUIRED_COLUMNS = ("business_id", "expense_id", "date", "supplier", "amount", "currency", "category")
OPTIONAL_EMPTY_AS_MISSING = ("vat_amount",)
MAX_LISTED_REJECTIONS = 50


class Command(BaseCommand):
    help = (
        "Import a CSV of categorised expenses (columns business_id, expense_id, date, supplier, "
        "description, amount, vat_amount, currency, payment_method, merchant_category, department, "
        "category; others are ignored) through the event pipeline. Rows are validated like API "
        "events; bad rows are reported and skipped. Importing a file again sends duplicates, "
        "which are acknowledged and not applied twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="CSV file with a header row.")
        parser.add_argument("--batch-size", type=int, default=500, help="Events stored per transaction (default 500).")

    def handle(self, *args, path, batch_size, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"File not found: {source}")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")

        counts = collections.Counter()
        rejections = []
        with source.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise CommandError(
                    f"{source} has no column {', '.join(missing)}; required: {', '.join(REQUIRED_COLUMNS)}."
                )
            batch = []
            for line_number, row in enumerate(tqdm(reader, desc="Importing", unit=" rows", disable=None), start=2):
                event, error = _event_from_row(row)
                if error:
                    counts["rejected"] += 1
                    rejections.append((line_number, error))
                    continue
                batch.append(event)
                if len(batch) >= batch_size:
                    self._publish(batch, counts)
                    batch = []
            if batch:
                self._publish(batch, counts)

        self._report(counts, rejections)

    def _publish(self, batch, counts):
        for result in services.accept_events(events=batch):
            counts[result.status] += 1

    def _report(self, counts, rejections):
        for line_number, error in rejections[:MAX_LISTED_REJECTIONS]:
            self.stderr.write(f"line {line_number}: rejected: {error}")
        if len(rejections) > MAX_LISTED_REJECTIONS:
            self.stderr.write(f"... and {len(rejections) - MAX_LISTED_REJECTIONS} more rejected rows.")
        self.stdout.write(
            f"Accepted {counts['accepted']} rows, {counts['duplicate']} already imported, "
            f"rejected {counts['rejected']}."
        )


def _event_from_row(row: dict) -> tuple[dict | None, str | None]:
    expense = {}
    for column in EXPENSE_COLUMNS:
        value = (row.get(column) or "").strip()
        if value == "" and column in OPTIONAL_EMPTY_AS_MISSING:
            continue
        if column in row:
            expense[column] = value
    expense["version"] = row.get("version") or 1
    event = {
        "event_id": f"import:{expense.get('business_id', '')}:{expense.get('expense_id', '')}:v{expense['version']}",
        "type": "expense.created",
        "expense": expense,
    }
    serializer = EventSerializer(data=event)
    if serializer.is_valid():
        return serializer.validated_data, None
    return None, _describe(serializer.errors, row)


def _describe(errors, row) -> str:
    parts = []
    for field, messages in _flatten(errors):
        name = field.removeprefix("expense.")
        value = row.get(name, "")
        parts.append(f"{name}={value[:60]!r}: {' '.join(messages)}")
    return "; ".join(parts)


def _flatten(errors, prefix=""):
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list) and errors and isinstance(errors[0], (dict, list)):
        for item in errors:
            yield from _flatten(item, prefix)
    else:
        yield prefix, [str(message) for message in errors]
