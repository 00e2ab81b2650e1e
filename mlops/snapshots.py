"""Training dataset snapshots: immutable, checksummed exports of the lookup store's expenses.

A snapshot is a gzip-compressed JSON lines file with one live expense per line, sorted by
business id and expense id, so that a model version can name exactly the rows it was trained on
and the promotion gate can rebuild the same time-based holdout later.
"""

import datetime
import gzip
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings

from lookup.domain import Expense
from lookup.stores import get_lookup_store
from mlops.artefacts import write_once
from mlops.models import DatasetSnapshot
from mlops.training import TrainingRow

logger = logging.getLogger(__name__)

SNAPSHOT_FOLDER = "snapshots"
SNAPSHOT_SUFFIX = ".jsonl.gz"
# Rows between two progress callbacks while the store is read.
PROGRESS_EVERY_ROWS = 1000

# Fields of a stored expense that the model reads, as named in FEATURE_SCHEMA.
RECORD_FIELDS = (
    "business_id",
    "supplier",
    "description",
    "currency",
    "payment_method",
    "merchant_category",
    "department",
)


class SnapshotError(Exception):
    """A snapshot file is missing, unreadable, or does not match its recorded checksum."""


def create_snapshot(*, on_rows_read: Callable[[int], None] = lambda count: None) -> DatasetSnapshot:
    """Export every live expense in the lookup store to a new snapshot file and register it.

    on_rows_read is called with the running row count while the store is read. The file is
    written once and made read-only. Raises LookupStoreUnavailable when the store cannot be read.
    """
    store = get_lookup_store()
    lines = []
    for expense in store.iter_expenses():
        lines.append(_snapshot_line(expense))
        if len(lines) % PROGRESS_EVERY_ROWS == 0:
            on_rows_read(len(lines))
    on_rows_read(len(lines))

    # Sorted so that the same expenses always give the same file and the same checksum.
    lines.sort(key=lambda line: (line["business_id"], line["expense_id"]))
    data = _compress(lines)
    uri = _write_once(data)
    dates = [line["date"] for line in lines if line["date"]]
    snapshot = DatasetSnapshot.objects.create(
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        store=store.name,
        row_count=len(lines),
        category_count=len({line["category"] for line in lines}),
        business_count=len({line["business_id"] for line in lines}),
        date_from=datetime.date.fromisoformat(min(dates)) if dates else None,
        date_to=datetime.date.fromisoformat(max(dates)) if dates else None,
    )
    logger.info("Created dataset snapshot", extra={"snapshot_id": snapshot.pk, "rows": snapshot.row_count})
    return snapshot


def load_snapshot_rows(snapshot: DatasetSnapshot) -> list[TrainingRow]:
    """Read a snapshot's rows in file order, after checking the file against its SHA-256."""
    try:
        data = Path(snapshot.uri).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"Cannot read dataset snapshot {snapshot.pk} at {snapshot.uri}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != snapshot.sha256:
        raise SnapshotError(
            f"Dataset snapshot {snapshot.pk} has SHA-256 {actual}, but the registry records {snapshot.sha256}; "
            "the file was changed or corrupted. Create a new snapshot."
        )

    rows = []
    for text in gzip.decompress(data).decode().splitlines():
        line = json.loads(text)
        record = {name: line[name] for name in RECORD_FIELDS}
        record["amount"] = line["amount"]
        date = datetime.date.fromisoformat(line["date"]) if line["date"] else None
        rows.append(TrainingRow(record=record, category=line["category"], date=date))
    return rows


def training_data_reference(snapshot: DatasetSnapshot) -> dict:
    """Return the facts of a snapshot that a model version records as its training data."""
    return {
        "snapshot_id": snapshot.pk,
        "uri": snapshot.uri,
        "store": snapshot.store,
        "rows": snapshot.row_count,
        "categories": snapshot.category_count,
        "businesses": snapshot.business_count,
        "date_from": snapshot.date_from.isoformat() if snapshot.date_from else None,
        "date_to": snapshot.date_to.isoformat() if snapshot.date_to else None,
        "sha256": snapshot.sha256,
    }


def _snapshot_line(expense: Expense) -> dict:
    line = {name: getattr(expense, name) for name in RECORD_FIELDS}
    line |= {
        "expense_id": expense.expense_id,
        "version": expense.version,
        "amount": str(expense.amount) if expense.amount is not None else "",
        "category": expense.category,
        "date": expense.date.isoformat() if expense.date else None,
    }
    return line


def _compress(lines: Iterable[dict]) -> bytes:
    text = "".join(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n" for line in lines)
    # mtime=0 keeps the gzip header free of the clock, so equal rows give equal bytes.
    return gzip.compress(text.encode(), compresslevel=6, mtime=0)


def _snapshot_root() -> Path:
    # NOTE: with an S3 artefact store (an s3:// ARTEFACT_STORE) snapshots are still written to
    # the local VAR_DIR, so only processes on this machine can read them, the promotion gate
    # included. They can move next to the artefacts once the artefact store has a generic write.
    if str(settings.ARTEFACT_STORE).startswith("s3://"):
        return Path(settings.VAR_DIR) / SNAPSHOT_FOLDER
    return Path(settings.ARTEFACT_STORE) / SNAPSHOT_FOLDER


def _write_once(data: bytes) -> str:
    """Write a new snapshot file that is never replaced, make it read-only and return its path."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    target = _snapshot_root() / f"snapshot-{stamp}-{secrets.token_hex(4)}{SNAPSHOT_SUFFIX}"
    try:
        write_once(target, data)
    except FileExistsError as exc:
        raise SnapshotError(f"Dataset snapshot file {target} already exists; snapshots are immutable.") from exc
    return str(target)
