"""POST /api/v1/events: validation, duplicates, conflicts and what reaches the lookup store."""

import datetime
import json
from decimal import Decimal

import pytest

from lookup.models import ExpenseEvent
from lookup.stores import get_lookup_store
from tests.factories import created_event, deleted_event, expense_payload, updated_event
from tests.support.api import error_fields

pytestmark = pytest.mark.django_db

URL = "/api/v1/events"


def stored(expense_id, business_id="b1"):
    return get_lookup_store().get_expense(business_id=business_id, expense_id=expense_id)


def test_events_single_object_accepted(send_events):
    response = send_events(created_event(event_id="evt-a", expense_id="e-a"))

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "events": [{"event_id": "evt-a", "status": "accepted"}]}


def test_events_list_accepted_and_applied(send_events):
    events = [created_event(expense_id="e-1"), created_event(expense_id="e-2")]

    response = send_events(events)

    assert response.json()["accepted"] == 2
    assert stored("e-1") is not None
    assert stored("e-2") is not None


def test_events_duplicate_acknowledged_applied_once(send_events):
    event = created_event(event_id="evt-dup", expense_id="e-dup")
    send_events(event)

    response = send_events(event)

    assert response.status_code == 202
    assert response.json()["events"] == [{"event_id": "evt-dup", "status": "duplicate"}]
    assert ExpenseEvent.objects.filter(event_id="evt-dup").count() == 1
    assert get_lookup_store().count_expenses(business_id="b1") == 1


def test_events_duplicate_within_request(send_events):
    event = created_event(event_id="evt-twice")

    response = send_events([event, event])

    assert response.json()["accepted"] == 1
    assert response.json()["duplicates"] == 1


def test_events_duplicate_amount_as_number_or_string(api_client):
    as_string = created_event(event_id="evt-num", expense_id="e-num", amount="4.50")
    as_number = json.dumps(as_string).replace('"4.50"', "4.50")
    api_client.post(URL, as_string, format="json")

    response = api_client.post(URL, data=as_number, content_type="application/json")

    assert response.json()["duplicates"] == 1


def test_events_conflict_returns_409(send_events):
    send_events(created_event(event_id="evt-c", expense_id="e-c", category="Meals"))

    response = send_events(created_event(event_id="evt-c", expense_id="e-c", category="Travel"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "evt-c" in response.json()["error"]["message"]
    assert stored("e-c").category == "Meals"


def test_events_conflict_stores_nothing_from_request(send_events):
    send_events(created_event(event_id="evt-x", expense_id="e-x", category="Meals"))
    fresh = created_event(event_id="evt-fresh", expense_id="e-fresh")
    clash = created_event(event_id="evt-x", expense_id="e-x", category="Travel")

    response = send_events([fresh, clash])

    assert response.status_code == 409
    assert not ExpenseEvent.objects.filter(event_id="evt-fresh").exists()
    assert stored("e-fresh") is None


def test_events_conflict_within_request(send_events):
    first = created_event(event_id="evt-same", expense_id="e-s", category="Meals")
    second = created_event(event_id="evt-same", expense_id="e-s", category="Travel")

    response = send_events([first, second])

    assert response.status_code == 409
    assert not ExpenseEvent.objects.exists()


def test_events_conflict_on_changed_type(send_events):
    send_events(created_event(event_id="evt-t", expense_id="e-t"))

    response = send_events(deleted_event(event_id="evt-t", expense_id="e-t", version=2))

    assert response.status_code == 409


@pytest.mark.parametrize("amount_json", ["30.4", "0.1", "19.999999999999998", "-42.55"])
def test_events_json_number_amount_stored_exactly(api_client, django_capture_on_commit_callbacks, amount_json):
    body = json.dumps(created_event(expense_id="e-exact", amount="__AMOUNT__")).replace('"__AMOUNT__"', amount_json)

    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(URL, data=body, content_type="application/json")

    assert stored("e-exact").amount == Decimal(amount_json)
    assert str(stored("e-exact").amount) == amount_json


def test_events_vat_amount_stored_exactly(send_events):
    send_events(created_event(expense_id="e-vat", vat_amount="0.10"))

    assert str(stored("e-vat").vat_amount) == "0.10"


def test_events_offset_date_keeps_local_day(send_events, settings):
    settings.TIME_ZONE = "America/Los_Angeles"

    send_events(created_event(expense_id="e-tz", date="2024-11-13T07:40:00+10:00"))

    assert stored("e-tz").date == datetime.date(2024, 11, 13)


def test_events_negative_offset_date_keeps_local_day(send_events):
    send_events(created_event(expense_id="e-tz2", date="2024-11-12T23:30:00-08:00"))

    assert stored("e-tz2").date == datetime.date(2024, 11, 12)


def test_events_supplier_key_stored(send_events):
    send_events(created_event(expense_id="e-key", supplier="SUMUP *Blue Heron Cafe"))

    assert stored("e-key").supplier_key == "blue heron cafe"


@pytest.mark.parametrize(
    "field, value",
    [
        ("amount", "NaN"),
        ("amount", "sNaN"),
        ("amount", "Infinity"),
        ("amount", "-Infinity"),
        ("amount", "1e400"),
        ("amount", "1,234.56"),
        ("amount", "1.234,56"),
        ("amount", "3,2"),
        ("amount", "(42.50)"),
        ("amount", "$-42.55"),
        ("amount", "--5"),
        ("amount", "1234567890123"),
        ("amount", True),
        ("amount", {"value": 1}),
        ("date", "05/04/2024"),
        ("date", "13/04/2024"),
        ("date", "20240405"),
        ("date", "2024-02-30"),
        ("currency", "ABC"),
        ("supplier", ""),
        ("supplier", "   "),
        ("supplier", "Cafe\x00"),
        ("supplier", "S" * 50_000),
        ("category", ""),
        ("category", "Meals\x07"),
        ("category", 7),
        ("expense_id", "e 1"),
        ("version", 0),
        ("version", -3),
        ("version", 2**62 + 1),
        ("version", "v2"),
        ("version", 1.5),
        ("version", True),
        ("colour", "red"),
    ],
)
def test_events_expense_field_rejected(send_events, field, value):
    event = created_event(**{field: value})

    response = send_events(event)

    assert response.status_code == 400
    assert f"expense.{field}" in error_fields(response)
    assert not ExpenseEvent.objects.exists()


def test_events_amount_error_echoes_value(send_events):
    response = send_events(created_event(amount="(42.50)"))

    assert error_fields(response)["expense.amount"]["value"] == "(42.50)"


@pytest.mark.parametrize("missing", ["business_id", "expense_id", "version", "supplier", "category", "amount"])
def test_events_created_field_missing(send_events, missing):
    event = created_event()
    del event["expense"][missing]

    response = send_events(event)

    assert response.status_code == 400
    assert error_fields(response)[f"expense.{missing}"]["message"] == "This field is required."


def test_events_deleted_needs_only_ids(send_events):
    response = send_events(deleted_event(expense_id="e-gone", version=1))

    assert response.status_code == 202


def test_events_deleted_ignores_other_fields(send_events):
    event = deleted_event(expense_id="e-gone", version=2)
    event["expense"] |= {"supplier": "Anything", "amount": "not checked"}

    response = send_events(event)

    assert response.status_code == 202


def test_events_deleted_version_missing(send_events):
    event = deleted_event(expense_id="e-gone", version=2)
    del event["expense"]["version"]

    response = send_events(event)

    assert "expense.version" in error_fields(response)


@pytest.mark.parametrize(
    "field, value",
    [
        ("event_id", ""),
        ("event_id", "evt 1"),
        ("event_id", "e" * 101),
        ("event_id", 12),
        ("type", "expense.archived"),
        ("type", ["expense.created"]),
        ("occurred_at", "yesterday"),
        ("occurred_at", "0001-01-01T00:00:00+14:00"),
        ("expense", [expense_payload()]),
        ("expense", "e1"),
        ("expense", None),
        ("colour", "red"),
    ],
)
def test_events_envelope_field_rejected(send_events, field, value):
    event = created_event() | {field: value}

    response = send_events(event)

    assert response.status_code == 400
    assert field in error_fields(response)


def test_events_list_error_path(send_events):
    events = [created_event(), created_event(amount="3,2")]

    response = send_events(events)

    assert response.status_code == 400
    assert "1.expense.amount" in error_fields(response)
    assert not ExpenseEvent.objects.exists()


def test_events_empty_list(send_events):
    response = send_events([])

    assert response.status_code == 400
    assert error_fields(response)["body"]["message"] == "Expected a list of 1 to 1000 events; received 0."


def test_events_1001_items(send_events):
    response = send_events([deleted_event(expense_id="e-1", version=1)] * 1001)

    assert response.status_code == 400
    assert error_fields(response)["body"]["value"] == "<list of 1001 items>"


@pytest.mark.parametrize("body", ["event", 42, [1, 2]])
def test_events_body_wrong_type(send_events, body):
    response = send_events(body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"]


def test_events_requires_authentication(client):
    response = client.post(URL, created_event(), content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_events_3mb_body(api_client):
    response = api_client.post(URL, created_event(description="x" * (3 * 1024 * 1024)), format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not ExpenseEvent.objects.exists()


def test_events_updated_event_replaces_category(send_events):
    send_events(created_event(expense_id="e-u", category="Meals"))

    send_events(updated_event(expense_id="e-u", version=2, category="Travel"))

    assert stored("e-u").category == "Travel"
