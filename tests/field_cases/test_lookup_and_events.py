"""Field cases C8-C12: the lookup store and the event pipeline, seen through the public API.

The store-level proofs (reserved words, item size, batch windows, throttling, concurrent
writers) run against every store adapter in tests/lookup/contract; README.md maps each case to
them. The tests here send the same inputs through POST /api/v1/events and read the result back
through POST /api/v1/predictions.
"""

import datetime
import multiprocessing
import os
import signal
import sqlite3
import time

import pytest

from lookup.models import ExpenseEvent
from lookup.stores import get_lookup_store
from tests.factories import created_event, deleted_event, updated_event
from tests.field_cases import killed_worker

KILLED_WORKER_EVENTS = 10
# Bound on each wait for a child process, because a child needs a few seconds on a loaded machine.
CHILD_WAIT_SECONDS = 120


def store():
    return get_lookup_store()


# C9: rebuilding a business's lookup from 120 events.


@pytest.mark.django_db
def test_c9_rebuild_from_120_events_with_duplicate_in_window(seed, predict):
    start = datetime.date(2024, 1, 1)
    events = [
        created_event(expense_id=f"e{number}", date=(start + datetime.timedelta(days=number)).isoformat())
        for number in range(119)
    ]
    # e10 is created and then updated inside the same 25-event window.
    events.insert(15, updated_event(expense_id="e10", version=2, category="Travel", date="2024-01-11"))

    body = seed(events)

    assert body["accepted"] == 120
    assert store().count_expenses(business_id="b1") == 119
    assert store().get_expense(business_id="b1", expense_id="e10").version == 2
    assert store().get_expense(business_id="b1", expense_id="e10").category == "Travel"
    assert not ExpenseEvent.objects.exclude(status=ExpenseEvent.Status.APPLIED).exists()
    top = predict(supplier="Blue Heron Cafe")["categories"][0]
    assert top["category"] == "Meals"
    assert top["evidence"]["matches"] == 50


# C11: at-least-once delivery.


@pytest.mark.django_db
def test_c11_created_event_twice_counts_once(seed, predict):
    event = created_event(event_id="evt-twice", expense_id="e-twice", supplier="Blue Heron Cafe")
    seed(event)

    body = seed(event)

    assert body["events"] == [{"event_id": "evt-twice", "status": "duplicate"}]
    assert store().count_expenses(business_id="b1") == 1
    assert predict(supplier="Blue Heron Cafe")["categories"][0]["evidence"]["matches"] == 1


@pytest.mark.django_db
def test_c11_deleted_event_twice_never_negative(seed, predict):
    seed([created_event(expense_id="e-1"), created_event(expense_id="e-2")])
    delete = deleted_event(event_id="evt-del", expense_id="e-1", version=2)
    seed(delete)

    body = seed(delete)
    # The same delete with another event_id, as a publisher that re-sends with a new id would.
    seed(deleted_event(expense_id="e-1", version=2))

    assert body["duplicates"] == 1
    assert store().count_expenses(business_id="b1") == 1
    assert predict(supplier="Blue Heron Cafe")["categories"][0]["evidence"]["matches"] == 1


@pytest.mark.integration
def test_c11_worker_killed_mid_update_loses_nothing(sqlite_file_url, tmp_path):
    context = multiprocessing.get_context("spawn")
    marker = tmp_path / "half-written"
    worker = context.Process(
        target=killed_worker.accept_and_hang_mid_update,
        args=(sqlite_file_url, KILLED_WORKER_EVENTS, str(marker)),
    )
    results = context.Queue()
    sweeper = context.Process(target=killed_worker.sweep_and_report, args=(sqlite_file_url, results))
    try:
        worker.start()
        _wait_for(marker, worker)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=CHILD_WAIT_SECONDS)
        pending_after_kill, stored_after_kill = _inbox_and_store_counts(sqlite_file_url)

        sweeper.start()
        swept, statuses, versions, live = results.get(timeout=CHILD_WAIT_SECONDS)
        sweeper.join(timeout=CHILD_WAIT_SECONDS)
    finally:
        for child in (worker, sweeper):
            if child.is_alive():
                child.kill()

    assert worker.exitcode == -signal.SIGKILL
    assert pending_after_kill == KILLED_WORKER_EVENTS
    assert stored_after_kill == KILLED_WORKER_EVENTS // 2
    assert swept == KILLED_WORKER_EVENTS
    # The half the killed worker wrote is recognised as its own write, not counted as stale.
    assert statuses == {"applied": KILLED_WORKER_EVENTS}
    assert versions == {f"k{number}": 1 for number in range(KILLED_WORKER_EVENTS)}
    assert live == KILLED_WORKER_EVENTS


def _wait_for(marker, worker) -> None:
    deadline = time.monotonic() + CHILD_WAIT_SECONDS
    while not marker.exists():
        assert worker.is_alive(), f"the worker exited with {worker.exitcode} before writing half of the events"
        assert time.monotonic() < deadline, f"the worker wrote nothing within {CHILD_WAIT_SECONDS} s"
        time.sleep(0.05)


def _inbox_and_store_counts(database_url: str) -> tuple[int, int]:
    """Read the inbox's pending count and the store's live count straight from the SQLite file."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        [(pending,)] = connection.execute("SELECT count(*) FROM lookup_expenseevent WHERE status = 'pending'")
        [(live,)] = connection.execute("SELECT count(*) FROM lookup_lookupexpense WHERE NOT deleted")
    return pending, live
