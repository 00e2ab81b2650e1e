"""lookup.services: accepting events into the inbox and applying them to the lookup store."""

import datetime

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from lookup import services
from lookup.models import ExpenseEvent
from lookup.serializers import EventSerializer
from lookup.stores import LookupStoreError, LookupStoreUnavailable, get_lookup_store
from lookup.stores.base import LookupStore
from lookup.stores.sql import SqlLookupStore
from tests.factories import created_event, deleted_event, updated_event

pytestmark = pytest.mark.django_db


def accept(*events):
    """Validate and accept events without running their tasks, and return the inbox rows in order."""
    serializer = EventSerializer(data=list(events), many=True)
    serializer.is_valid(raise_exception=True)
    services.accept_events(events=serializer.validated_data)
    return [ExpenseEvent.objects.get(event_id=event["event_id"]) for event in events]


def apply(*rows):
    return services.apply_events(event_pks=[row.pk for row in rows])


def stored(expense_id):
    return get_lookup_store().get_expense(business_id="b1", expense_id=expense_id)


def status_of(row):
    row.refresh_from_db()
    return row.status


def unavailable_apply(self, change):
    raise LookupStoreUnavailable("throttled")


@pytest.fixture
def store_unavailable(monkeypatch):
    monkeypatch.setattr(SqlLookupStore, "apply", unavailable_apply)
    monkeypatch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)


def test_accept_events_stores_pending(db):
    [row] = accept(created_event(event_id="evt-1", expense_id="e-1"))

    assert row.status == ExpenseEvent.Status.PENDING
    assert row.attempts == 0
    assert stored("e-1") is None


def test_accept_events_result_per_event(db):
    first = created_event(event_id="evt-1")
    accept(first)
    serializer = EventSerializer(data=[created_event(event_id="evt-2"), first], many=True)
    serializer.is_valid(raise_exception=True)

    results = services.accept_events(events=serializer.validated_data)

    assert [(result.event_id, result.status) for result in results] == [("evt-2", "accepted"), ("evt-1", "duplicate")]


def test_accept_events_enqueues_on_commit(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        [row] = accept(created_event(expense_id="e-1"))

    assert len(callbacks) == 1
    assert status_of(row) == ExpenseEvent.Status.PENDING


def test_accept_events_duplicate_enqueues_nothing(db, django_capture_on_commit_callbacks):
    event = created_event(expense_id="e-1")
    accept(event)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        accept(event)

    assert callbacks == []


def test_accept_events_conflict_raises(db):
    accept(created_event(event_id="evt-1", category="Meals"))

    with pytest.raises(services.EventConflict) as raised:
        accept(created_event(event_id="evt-1", category="Travel"))

    assert raised.value.event_ids == ["evt-1"]


def test_apply_events_marks_applied(db):
    [row] = accept(created_event(expense_id="e-1"))

    retry = apply(row)

    row.refresh_from_db()
    assert retry == []
    assert row.status == ExpenseEvent.Status.APPLIED
    assert row.attempts == 1
    assert row.processed_at is not None


def test_apply_events_twice_applies_once(db):
    [row] = accept(created_event(expense_id="e-1"))
    apply(row)

    apply(row)

    row.refresh_from_db()
    assert row.attempts == 1
    assert get_lookup_store().count_expenses(business_id="b1") == 1


def test_apply_events_update_before_create(db):
    create, update = accept(
        created_event(expense_id="e-1", category="Meals", version=1),
        updated_event(expense_id="e-1", category="Travel", version=2),
    )

    apply(update)
    apply(create)

    assert stored("e-1").category == "Travel"
    assert status_of(create) == ExpenseEvent.Status.STALE


def test_apply_events_orders_batch_by_version(db):
    update, create = accept(
        updated_event(expense_id="e-1", category="Travel", version=2),
        created_event(expense_id="e-1", category="Meals", version=1),
    )

    apply(update, create)

    assert stored("e-1").category == "Travel"
    assert status_of(update) == ExpenseEvent.Status.APPLIED


def test_apply_events_older_after_newer(db):
    newer, older = accept(
        updated_event(expense_id="e-1", category="Software", version=3),
        updated_event(expense_id="e-1", category="Travel", version=2),
    )

    apply(newer)
    apply(older)

    assert stored("e-1").category == "Software"
    assert stored("e-1").version == 3


def test_apply_events_delete_then_late_update(db):
    create, delete, late = accept(
        created_event(expense_id="e-1", version=1),
        deleted_event(expense_id="e-1", version=3),
        updated_event(expense_id="e-1", category="Travel", version=2),
    )

    apply(create)
    apply(delete)
    apply(late)

    assert stored("e-1").deleted is True
    assert stored("e-1").version == 3
    assert status_of(late) == ExpenseEvent.Status.STALE
    assert get_lookup_store().count_expenses(business_id="b1") == 0


def test_apply_events_delete_before_create(db):
    delete, create = accept(
        deleted_event(expense_id="e-1", version=2),
        created_event(expense_id="e-1", version=1),
    )

    apply(delete)
    apply(create)

    assert stored("e-1").deleted is True


def test_apply_events_same_delete_twice(db, send_events):
    send_events(created_event(expense_id="e-1"))
    send_events(created_event(expense_id="e-2"))
    delete = deleted_event(event_id="evt-del", expense_id="e-1", version=2)

    send_events(delete)
    response = send_events(delete)

    assert response.json()["duplicates"] == 1
    assert get_lookup_store().count_expenses(business_id="b1") == 1


def test_apply_events_same_delete_new_event_id(db):
    create, first, second = accept(
        created_event(expense_id="e-1"),
        deleted_event(expense_id="e-1", version=2),
        deleted_event(expense_id="e-1", version=2),
    )

    apply(create, first)
    apply(second)

    assert status_of(second) == ExpenseEvent.Status.STALE
    assert get_lookup_store().count_expenses(business_id="b1") == 0


def test_apply_events_transient_error_stays_pending(db, store_unavailable):
    [row] = accept(created_event(expense_id="e-1"))

    retry = apply(row)

    row.refresh_from_db()
    assert retry == [row.pk]
    assert row.status == ExpenseEvent.Status.PENDING
    assert row.attempts == 1
    assert row.last_error == "LookupStoreUnavailable: throttled"


def test_apply_events_parks_after_max_attempts(db, store_unavailable, settings):
    settings.EVENT_MAX_ATTEMPTS = 3
    [row] = accept(created_event(expense_id="e-1"))

    retries = [apply(row) for _ in range(3)]

    row.refresh_from_db()
    assert retries == [[row.pk], [row.pk], []]
    assert row.status == ExpenseEvent.Status.FAILED
    assert row.attempts == 3


def test_apply_events_failed_event_not_retried(db, store_unavailable, settings):
    settings.EVENT_MAX_ATTEMPTS = 1
    [row] = accept(created_event(expense_id="e-1"))
    apply(row)

    retry = apply(row)

    row.refresh_from_db()
    assert retry == []
    assert row.attempts == 1


def test_apply_events_permanent_error_parks_at_once(db, monkeypatch):
    def reject(self, change):
        raise LookupStoreError("item too large")

    monkeypatch.setattr(SqlLookupStore, "apply", reject)
    monkeypatch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)
    [row] = accept(created_event(expense_id="e-1"))

    retry = apply(row)

    row.refresh_from_db()
    assert retry == []
    assert row.status == ExpenseEvent.Status.FAILED
    assert row.attempts == 1


def test_apply_events_corrupt_payload_parks(db):
    [row] = accept(created_event(expense_id="e-1"))
    ExpenseEvent.objects.filter(pk=row.pk).update(payload={"type": "expense.created", "expense": {}})

    apply(row)

    row.refresh_from_db()
    assert row.status == ExpenseEvent.Status.FAILED
    assert row.last_error.startswith("KeyError")


def test_apply_events_one_failure_spares_others(db, monkeypatch):
    original = SqlLookupStore.apply

    def fail_for_e1(self, change):
        if change.expense_id == "e-1":
            raise LookupStoreUnavailable("throttled")
        return original(self, change)

    monkeypatch.setattr(SqlLookupStore, "apply", fail_for_e1)
    monkeypatch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)
    first, second = accept(created_event(expense_id="e-1"), created_event(expense_id="e-2"))

    apply(first, second)

    assert status_of(first) == ExpenseEvent.Status.PENDING
    assert status_of(second) == ExpenseEvent.Status.APPLIED


def test_apply_events_partial_batch_counts_applied(db, monkeypatch):
    # A batch write that stops partway (as a DynamoDB batch can) after writing the first change:
    # the one-by-one fallback finds it written by this event and records it applied, not stale.
    def write_first_then_fail(self, changes):
        self.apply(changes[0])
        raise LookupStoreUnavailable("throttled after the first write")

    monkeypatch.setattr(SqlLookupStore, "apply_many", write_first_then_fail)
    first, second = accept(created_event(expense_id="e-1"), created_event(expense_id="e-2"))

    retry = apply(first, second)

    assert retry == []
    assert status_of(first) == ExpenseEvent.Status.APPLIED
    assert status_of(second) == ExpenseEvent.Status.APPLIED


def test_retry_failed_events_applies_again(db, monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.EVENT_MAX_ATTEMPTS = 1
    [row] = accept(created_event(expense_id="e-1"))
    with monkeypatch.context() as patch:
        patch.setattr(SqlLookupStore, "apply", unavailable_apply)
        patch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)
        apply(row)

    with django_capture_on_commit_callbacks(execute=True):
        count = services.retry_failed_events(event_pks=[row.pk])

    row.refresh_from_db()
    assert count == 1
    assert row.status == ExpenseEvent.Status.APPLIED
    assert row.attempts == 1
    assert stored("e-1") is not None


def test_retry_failed_events_ignores_other_statuses(db):
    [row] = accept(created_event(expense_id="e-1"))

    count = services.retry_failed_events(event_pks=[row.pk])

    assert count == 0
    assert status_of(row) == ExpenseEvent.Status.PENDING


def test_sweep_pending_events_requeues_old(db, settings):
    settings.EVENT_PENDING_MAX_AGE_SECONDS = 60
    old, recent = accept(created_event(expense_id="e-old"), created_event(expense_id="e-new"))
    an_hour_ago = timezone.now() - datetime.timedelta(hours=1)
    ExpenseEvent.objects.filter(pk=old.pk).update(received_at=an_hour_ago)

    count = services.sweep_pending_events()

    assert count == 1
    assert status_of(old) == ExpenseEvent.Status.APPLIED
    assert status_of(recent) == ExpenseEvent.Status.PENDING


def test_sweep_pending_events_skips_failed(db, settings):
    [row] = accept(created_event(expense_id="e-1"))
    an_hour_ago = timezone.now() - datetime.timedelta(hours=1)
    ExpenseEvent.objects.filter(pk=row.pk).update(received_at=an_hour_ago, status=ExpenseEvent.Status.FAILED)

    assert services.sweep_pending_events() == 0


def test_enqueue_events_batches(db, settings, monkeypatch):
    from lookup import tasks

    settings.EVENT_BATCH_SIZE = 2
    batches = []
    monkeypatch.setattr(tasks.apply_events, "apply_async", lambda args, countdown: batches.append(args[0]))

    services.enqueue_events([1, 2, 3, 4, 5])

    assert batches == [[1, 2], [3, 4], [5]]


def test_retry_delay_seconds_bounds():
    delays = [services.retry_delay_seconds(attempts) for attempts in (1, 5, 30) for _ in range(20)]

    assert min(delays) >= 0
    assert max(delays) <= services.MAX_RETRY_DELAY_SECONDS


def test_accept_events_broker_down_keeps_events(db, monkeypatch, django_capture_on_commit_callbacks, caplog):
    def broker_down(event_pks, *, countdown=0):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(services, "enqueue_events", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        [row] = accept(created_event(expense_id="e-1"))

    assert status_of(row) == ExpenseEvent.Status.PENDING
    assert "the sweep will queue them" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_events_api_broker_down_returns_202(api_client, monkeypatch):
    # A committing test database runs the on_commit publish inside the request, as production does.
    def broker_down(event_pks, *, countdown=0):
        raise BrokerError("Connection refused.")

    monkeypatch.setattr(services, "enqueue_events", broker_down)

    response = api_client.post("/api/v1/events", created_event(event_id="evt-1"), format="json")

    assert response.status_code == 202
    assert ExpenseEvent.objects.get(event_id="evt-1").status == ExpenseEvent.Status.PENDING


def test_apply_events_redelivery_after_unrecorded_write(db):
    # A worker killed after the store committed its write, before it recorded the outcome: the
    # redelivered event finds its own write in the store, so it was applied, not stale.
    [row] = accept(created_event(expense_id="e-1", version=3))
    get_lookup_store().apply(services.change_from_event(row))

    retry = apply(row)

    row.refresh_from_db()
    assert retry == []
    assert row.status == ExpenseEvent.Status.APPLIED
    assert row.attempts == 1


def test_apply_events_same_version_other_event_stale(db):
    first, second = accept(
        created_event(event_id="evt-a", expense_id="e-1", version=2),
        updated_event(event_id="evt-b", expense_id="e-1", version=2, category="Travel"),
    )
    get_lookup_store().apply(services.change_from_event(first))

    apply(second)

    assert status_of(second) == ExpenseEvent.Status.STALE
    assert stored("e-1").source_event_id == "evt-a"
