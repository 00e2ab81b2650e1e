"""lookup.tasks: the apply task's retry hand-off, and tasks queued only after commit."""

import pytest
from django.db import transaction

from lookup import services, tasks
from lookup.models import ExpenseEvent
from lookup.serializers import EventSerializer
from lookup.stores import LookupStoreUnavailable, get_lookup_store
from lookup.stores.base import LookupStore
from lookup.stores.sql import SqlLookupStore
from tests.factories import created_event


def validated(*events):
    serializer = EventSerializer(data=list(events), many=True)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class Rollback(Exception):
    pass


@pytest.fixture
def queued(monkeypatch):
    """Record each apply_events batch sent to the broker, then run it as a worker would."""
    batches = []
    send = tasks.apply_events.apply_async

    def record(args, countdown=0):
        batches.append(args[0])
        return send(args=args, countdown=countdown)

    monkeypatch.setattr(tasks.apply_events, "apply_async", record)
    return batches


@pytest.mark.django_db(transaction=True)
def test_task_runs_after_commit(queued):
    with transaction.atomic():
        services.accept_events(events=validated(created_event(expense_id="e-1")))
        queued_inside = list(queued)

    assert queued_inside == []
    assert len(queued) == 1
    assert get_lookup_store().get_expense(business_id="b1", expense_id="e-1") is not None


@pytest.mark.django_db(transaction=True)
def test_task_never_runs_on_rollback(queued):
    with pytest.raises(Rollback), transaction.atomic():
        services.accept_events(events=validated(created_event(expense_id="e-1")))
        raise Rollback

    assert queued == []
    assert not ExpenseEvent.objects.exists()
    assert get_lookup_store().get_expense(business_id="b1", expense_id="e-1") is None


@pytest.mark.django_db(transaction=True)
def test_task_after_outer_commit_only(queued):
    with transaction.atomic():
        with transaction.atomic():
            services.accept_events(events=validated(created_event(expense_id="e-1")))
        queued_after_inner = list(queued)

    assert queued_after_inner == []
    assert len(queued) == 1


@pytest.mark.django_db(transaction=True)
def test_events_api_applies_after_commit(api_client, queued):
    response = api_client.post("/api/v1/events", created_event(expense_id="e-1"), format="json")

    assert response.status_code == 202
    assert len(queued) == 1
    assert ExpenseEvent.objects.get().status == ExpenseEvent.Status.APPLIED


@pytest.mark.django_db
def test_apply_events_task_requeues_transient(monkeypatch, settings, django_capture_on_commit_callbacks):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    requeued = []
    monkeypatch.setattr(SqlLookupStore, "apply", _unavailable)
    monkeypatch.setattr(SqlLookupStore, "apply_many", LookupStore.apply_many)
    monkeypatch.setattr(services, "enqueue_events", lambda pks, countdown: requeued.append((pks, countdown)))
    services.accept_events(events=validated(created_event(expense_id="e-1")))
    row = ExpenseEvent.objects.get()

    tasks.apply_events(event_pks=[row.pk])

    [(pks, countdown)] = requeued
    assert pks == [row.pk]
    assert 0 <= countdown <= 2


@pytest.mark.django_db
def test_apply_events_task_no_requeue_when_done(monkeypatch, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    requeued = []
    monkeypatch.setattr(services, "enqueue_events", lambda pks, countdown: requeued.append(pks))
    services.accept_events(events=validated(created_event(expense_id="e-1")))

    tasks.apply_events(event_pks=[ExpenseEvent.objects.get().pk])

    assert requeued == []


@pytest.mark.django_db
def test_sweep_task_calls_service(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "sweep_pending_events", lambda: calls.append("swept") or 0)

    tasks.sweep_pending_events()

    assert calls == ["swept"]


def _unavailable(self, change):
    raise LookupStoreUnavailable("throttled")
