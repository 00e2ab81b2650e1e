import datetime
import gzip
import io
import json
import os
import stat
from pathlib import Path

import pytest
from django.core.management import call_command

from lookup.stores import get_lookup_store
from mlops import services, snapshots
from mlops.models import DatasetSnapshot, ModelVersion, TrainingRun
from mlops.snapshots import SnapshotError, create_snapshot, load_snapshot_rows
from mlops.tasks import create_snapshot as create_snapshot_task
from tests.mlops.synthetic import START_DATE, expense_change, synthetic_records


def _store(count: int, *, category_for: str | None = None) -> None:
    store = get_lookup_store()
    for index, (record, category, date) in enumerate(synthetic_records(count)):
        store.apply(expense_change(expense_id=f"e{index}", record=record, category=category_for or category, date=date))


@pytest.mark.django_db
def test_create_snapshot_records_facts():
    _store(40)

    snapshot = create_snapshot()

    snapshot.refresh_from_db()
    assert snapshot.row_count == 40
    assert snapshot.category_count == 5
    assert snapshot.business_count == 2
    assert snapshot.store == "sql"
    assert snapshot.date_from == START_DATE
    assert snapshot.date_to == START_DATE + datetime.timedelta(days=19)
    assert len(snapshot.sha256) == 64


@pytest.mark.django_db
def test_create_snapshot_writes_read_only_gzip():
    _store(10)

    snapshot = create_snapshot()

    path = Path(snapshot.uri)
    assert path.name.endswith(".jsonl.gz")
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    lines = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    assert len(lines) == 10
    assert [(line["business_id"], line["expense_id"]) for line in lines] == sorted(
        (line["business_id"], line["expense_id"]) for line in lines
    )
    assert not list(path.parent.glob("*.partial"))


@pytest.mark.django_db
def test_snapshot_of_same_rows_same_checksum():
    _store(20)

    first, second = create_snapshot(), create_snapshot()

    assert first.uri != second.uri
    assert first.sha256 == second.sha256


@pytest.mark.django_db
def test_load_snapshot_rows_round_trip():
    records = synthetic_records(12)
    _store(12)

    rows = load_snapshot_rows(create_snapshot())

    assert len(rows) == 12
    loaded = {(row.record["business_id"], row.record["supplier"], row.category, row.date) for row in rows}
    expected = {(record["business_id"], record["supplier"], category, date) for record, category, date in records}
    assert loaded == expected
    amounts = sorted(row.record["amount"] for row in rows)
    assert amounts == sorted(record["amount"] for record, _, _ in records)


@pytest.mark.django_db
def test_load_snapshot_rows_rejects_changed_file():
    _store(10)
    snapshot = create_snapshot()
    path = Path(snapshot.uri)
    path.chmod(0o644)
    path.write_bytes(gzip.compress(b'{"tampered": true}\n'))

    with pytest.raises(SnapshotError, match=rf"Dataset snapshot {snapshot.pk} has SHA-256 .* was changed or corrupted"):
        load_snapshot_rows(snapshot)


@pytest.mark.django_db
def test_load_snapshot_rows_missing_file():
    _store(5)
    snapshot = create_snapshot()
    os.chmod(snapshot.uri, 0o644)
    os.unlink(snapshot.uri)

    with pytest.raises(SnapshotError, match=f"Cannot read dataset snapshot {snapshot.pk}"):
        load_snapshot_rows(snapshot)


@pytest.mark.django_db
def test_create_snapshot_of_empty_store():
    snapshot = create_snapshot()

    assert snapshot.row_count == 0
    assert snapshot.date_from is None
    assert load_snapshot_rows(snapshot) == []


@pytest.mark.django_db
def test_create_snapshot_reports_rows_read(monkeypatch):
    monkeypatch.setattr(snapshots, "PROGRESS_EVERY_ROWS", 4)
    _store(10)
    counts = []

    create_snapshot(on_rows_read=counts.append)

    assert counts == [4, 8, 10]


@pytest.mark.django_db
def test_create_snapshot_command_prints_id_last():
    _store(10)
    stdout, stderr = io.StringIO(), io.StringIO()

    call_command("create_snapshot", stdout=stdout, stderr=stderr)

    snapshot = DatasetSnapshot.objects.get()
    assert stdout.getvalue().strip().splitlines()[-1] == str(snapshot.pk)
    assert "Snapshot of 10 expenses, 5 categories and 2 businesses" in stderr.getvalue()


@pytest.mark.django_db
def test_create_snapshot_task():
    _store(10)

    create_snapshot_task.delay()

    assert DatasetSnapshot.objects.get().row_count == 10


@pytest.mark.django_db
def test_run_training_trains_from_snapshot():
    _store(200)
    run = TrainingRun.objects.create()

    version = services.run_training(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED
    assert run.snapshot is not None
    assert run.rows_read == 200
    assert version.snapshot == run.snapshot
    assert version.training_data["snapshot_id"] == run.snapshot.pk
    assert version.training_data["sha256"] == run.snapshot.sha256
    assert version.training_data["rows"] == 200
    assert version.training_data["categories"] == 5


@pytest.mark.django_db
def test_run_training_reports_stages(monkeypatch):
    _store(200)
    run = TrainingRun.objects.create()
    stages = []
    update_run = services._update_run

    def record_stage(target, **changes):
        if changes.get("stage"):
            stages.append(changes["stage"])
        update_run(target, **changes)

    monkeypatch.setattr(services, "_update_run", record_stage)

    services.run_training(run_id=run.pk)

    assert stages == [
        "reading expenses",
        "snapshot written",
        "fitting on the training split",
        "evaluating on the holdout",
        "calibrating the combined confidence",
        "fitting on all rows",
        "registering",
    ]


@pytest.mark.django_db
def test_run_training_single_category_keeps_snapshot():
    _store(60, category_for="Meals")
    run = TrainingRun.objects.create()

    assert services.run_training(run_id=run.pk) is None

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("Not enough categories")
    assert run.snapshot.category_count == 1
    assert not ModelVersion.objects.exists()
