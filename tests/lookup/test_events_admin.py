"""The admin's event inbox: filters, search, the payload and error, and the retry action."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from lookup.models import ExpenseEvent
from tests.factories import created_event

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:lookup_expenseevent_changelist")


def _event(event_id: str, *, status=ExpenseEvent.Status.APPLIED, business_id="b1", expense_id="e1", **fields):
    payload = created_event(event_id=event_id, business_id=business_id, expense_id=expense_id)
    return ExpenseEvent.objects.create(
        event_id=event_id,
        type=fields.pop("type", ExpenseEvent.Type.CREATED),
        business_id=business_id,
        expense_id=expense_id,
        version=1,
        payload=payload,
        payload_sha256="0" * 64,
        status=status,
        **fields,
    )


def _listed(response) -> set[str]:
    return {event.event_id for event in response.context["cl"].result_list}


def test_inbox_lists_events(admin_client):
    _event("evt-1")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert _listed(response) == {"evt-1"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "failed"}, {"evt-failed"}),
        ({"type__exact": "expense.deleted"}, {"evt-deleted"}),
        ({"business_id": "b2"}, {"evt-b2"}),
        ({"business_id": " b2 "}, {"evt-b2"}),
        ({"q": "evt-b2"}, {"evt-b2"}),
        ({"q": "b2"}, {"evt-b2"}),
        ({"q": "e-special"}, {"evt-deleted"}),
    ],
)
def test_inbox_filters_and_search(admin_client, query, expected):
    _event("evt-applied")
    _event("evt-failed", status=ExpenseEvent.Status.FAILED, last_error="LookupStoreError: rejected")
    _event("evt-deleted", type=ExpenseEvent.Type.DELETED, expense_id="e-special")
    _event("evt-b2", business_id="b2")

    response = admin_client.get(CHANGELIST, query)

    assert response.status_code == 200
    assert _listed(response) == expected


def test_inbox_filters_by_received_date(admin_client):
    _event("evt-old")
    _event("evt-new")
    old = timezone.now() - datetime.timedelta(days=30)
    ExpenseEvent.objects.filter(event_id="evt-old").update(received_at=old)
    since = timezone.now() - datetime.timedelta(days=1)

    response = admin_client.get(CHANGELIST, {"received_at__gte": since.isoformat()})

    assert _listed(response) == {"evt-new"}


def test_business_filter_keeps_other_filters(admin_client):
    _event("evt-1")

    content = admin_client.get(CHANGELIST, {"status__exact": "failed"}).content.decode()

    assert 'name="business_id"' in content
    assert '<input type="hidden" name="status__exact" value="failed">' in content


def test_event_page_shows_payload_and_error(admin_client):
    event = _event("evt-1", status=ExpenseEvent.Status.FAILED, last_error="LookupStoreError: <bad> item")

    content = admin_client.get(reverse("admin:lookup_expenseevent_change", args=[event.pk])).content.decode()

    assert '<pre class="event-payload">{\n  &quot;event_id&quot;: &quot;evt-1&quot;,' in content
    assert '<pre class="event-error">LookupStoreError: &lt;bad&gt; item</pre>' in content


def test_inbox_is_read_only(admin_client):
    event = _event("evt-1")

    add = admin_client.get(reverse("admin:lookup_expenseevent_add"))
    delete = admin_client.post(reverse("admin:lookup_expenseevent_delete", args=[event.pk]), {"post": "yes"})
    change = admin_client.post(reverse("admin:lookup_expenseevent_change", args=[event.pk]), {"status": "pending"})
    actions = admin_client.get(CHANGELIST).context["action_form"].fields["action"].choices

    assert add.status_code == 403
    assert delete.status_code == 403
    assert change.status_code == 403
    assert ExpenseEvent.objects.get(pk=event.pk).status == ExpenseEvent.Status.APPLIED
    assert [name for name, _ in actions if name] == ["retry_failed"]


def test_retry_action_retries_failed_and_ignores_others(admin_client, django_capture_on_commit_callbacks):
    failed = [
        _event(f"evt-failed-{number}", status=ExpenseEvent.Status.FAILED, attempts=5, last_error="Timeout")
        for number in range(2)
    ]
    applied = _event("evt-applied", expense_id="e2")
    selected = [event.pk for event in [*failed, applied]]

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(CHANGELIST, {"action": "retry_failed", "_selected_action": selected}, follow=True)

    messages = [str(message) for message in response.context["messages"]]
    retried = ExpenseEvent.objects.filter(pk__in=[event.pk for event in failed])
    assert messages == [
        "Queued 2 failed events for retry.",
        "Ignored 1 selected event that was not failed, because only failed events can be retried.",
    ]
    assert {event.status for event in retried} == {ExpenseEvent.Status.PENDING}
    assert {event.attempts for event in retried} == {0}
    assert {event.last_error for event in retried} == {""}
    assert ExpenseEvent.objects.get(pk=applied.pk).status == ExpenseEvent.Status.APPLIED
    assert len(callbacks) == 1


def test_retry_action_requires_change_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_expenseevent"))
    client.force_login(viewer)
    event = _event("evt-failed", status=ExpenseEvent.Status.FAILED)

    listing = client.get(CHANGELIST)
    response = client.post(CHANGELIST, {"action": "retry_failed", "_selected_action": [event.pk]})

    assert listing.status_code == 200
    assert listing.context["action_form"] is None
    assert response.status_code == 200
    assert ExpenseEvent.objects.get(pk=event.pk).status == ExpenseEvent.Status.FAILED
