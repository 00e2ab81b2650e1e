"""Field cases C4-C7: non-finite numbers, separators and signs, time zones, day/month order."""

import datetime
import json
from decimal import Decimal

import pytest
from django.test import override_settings
from django.urls import reverse

from categorisation.serializers import PredictionRequestSerializer
from lookup.models import ExpenseEvent, LookupExpense, OverrideRule
from lookup.serializer_fields import AMOUNT_FORMAT_HELP, DATE_FORMAT_HELP
from lookup.stores import get_lookup_store
from tests.factories import created_event, expense_payload
from tests.support.api import error_fields

pytestmark = pytest.mark.django_db

EVENTS_URL = "/api/v1/events"
PREDICTIONS_URL = "/api/v1/predictions"
NON_FINITE_AMOUNTS = ["NaN", "sNaN", "Infinity", "-Infinity", "1e400"]
# "1234.56" and "-42.55" are the documented format; every other spelling is rejected.
SEPARATOR_AMOUNTS = ["1,234.56", "1.234,56", "3,2", "(42.50)", "$-42.55", "--5"]
EXACT_JSON_NUMBERS = ["30.4", "0.1", "19.999999999999998"]
OFFSET_DATES = ["2024-11-13T07:40:00+10:00", "2024-11-13T00:30:00+14:00", "2024-11-13T23:30:00-11:00"]
SERVER_TIME_ZONES = ["UTC", "America/Los_Angeles", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Australia/Brisbane"]
REFUSED_DATES = ["05/04/2024", "13/04/2024", "20240405", "2024-02-30"]


def stored(expense_id: str):
    return get_lookup_store().get_expense(business_id="b1", expense_id=expense_id)


def with_raw_amount(body: dict, amount_json: str) -> str:
    """Return body as JSON text with the amount written as amount_json, untouched by an encoder."""
    return json.dumps(body).replace('"__AMOUNT__"', amount_json)


def assert_amount_rejected(response, value):
    assert response.status_code == 400, response.content
    entry = error_fields(response)[response_field(response, "amount")]
    assert entry["value"] == value
    assert AMOUNT_FORMAT_HELP in entry["message"]


def response_field(response, name: str) -> str:
    """Return the one error path that ends with name, such as "expense.amount"."""
    [path] = [path for path in error_fields(response) if path.split(".")[-1] == name]
    return path


# C4: non-finite numbers.


@pytest.mark.parametrize("amount", NON_FINITE_AMOUNTS)
def test_c4_non_finite_amount_text_rejected_by_predictions(api_client, amount):
    response = api_client.post(PREDICTIONS_URL, expense_payload(amount=amount), format="json")

    assert_amount_rejected(response, amount)


@pytest.mark.parametrize("amount", NON_FINITE_AMOUNTS)
def test_c4_non_finite_amount_text_rejected_by_events(api_client, amount):
    response = api_client.post(EVENTS_URL, created_event(expense_id="e-nan", amount=amount), format="json")

    assert_amount_rejected(response, amount)
    assert error_fields(response).keys() == {"expense.amount"}
    assert not ExpenseEvent.objects.exists()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_c4_non_finite_json_literal_rejected(api_client, literal):
    body = with_raw_amount(created_event(amount="__AMOUNT__"), literal)

    response = api_client.post(EVENTS_URL, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "send finite numbers only" in response.json()["error"]["message"]


def test_c4_json_number_1e400_rejected(api_client):
    body = with_raw_amount(expense_payload(amount="__AMOUNT__"), "1e400")

    response = api_client.post(PREDICTIONS_URL, data=body, content_type="application/json")

    assert response.status_code == 400
    assert AMOUNT_FORMAT_HELP in error_fields(response)["amount"]["message"]


@pytest.mark.parametrize("amount_json", EXACT_JSON_NUMBERS)
def test_c4_json_number_stored_and_read_back_exactly(api_client, django_capture_on_commit_callbacks, amount_json):
    body = with_raw_amount(created_event(expense_id="e-exact", amount="__AMOUNT__"), amount_json)

    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(EVENTS_URL, data=body, content_type="application/json")

    assert response.status_code == 202, response.content
    assert ExpenseEvent.objects.get().payload["expense"]["amount"] == amount_json
    assert LookupExpense.objects.get(expense_id="e-exact").amount == amount_json
    assert stored("e-exact").amount == Decimal(amount_json)
    assert str(stored("e-exact").amount) == amount_json


@pytest.mark.parametrize("amount_json", EXACT_JSON_NUMBERS)
def test_c4_json_number_shown_exactly_in_lookups_admin(
    admin_client, api_client, django_capture_on_commit_callbacks, amount_json
):
    body = with_raw_amount(created_event(expense_id="e-admin", amount="__AMOUNT__"), amount_json)
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(EVENTS_URL, data=body, content_type="application/json")

    response = admin_client.get(reverse("admin:lookup_lookupexpense_browse"), {"business_id": "b1"})

    assert response.status_code == 200
    [row] = response.context["rows"]
    assert str(row["expense"].amount) == amount_json
    assert f"<td>{amount_json} GBP</td>" in response.content.decode()


# C5: separators and signs.


@pytest.mark.parametrize("amount", SEPARATOR_AMOUNTS)
def test_c5_separator_and_sign_spellings_rejected(api_client, amount):
    response = api_client.post(PREDICTIONS_URL, expense_payload(amount=amount), format="json")

    assert_amount_rejected(response, amount)


@pytest.mark.parametrize("amount", SEPARATOR_AMOUNTS)
def test_c5_rejected_spelling_stores_nothing(api_client, django_capture_on_commit_callbacks, amount):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(EVENTS_URL, created_event(expense_id="e-sep", amount=amount), format="json")

    assert_amount_rejected(response, amount)
    assert stored("e-sep") is None


@pytest.mark.parametrize("amount, exact", [("1234.56", "1234.56"), ("-42.55", "-42.55"), ("3.2", "3.2")])
def test_c5_documented_format_accepted(seed, amount, exact):
    seed([created_event(expense_id="e-ok", amount=amount)])

    assert str(stored("e-ok").amount) == exact


def test_c5_comma_never_read_as_thousands(api_client):
    response = api_client.post(PREDICTIONS_URL, expense_payload(amount="3,2"), format="json")

    assert response.status_code == 400
    assert error_fields(response)["amount"]["value"] == "3,2"


def test_c5_refund_keeps_known_supplier_category(seed, predict):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals", amount="42.50") for _ in range(2)])

    body = predict(supplier="Blue Heron Cafe", amount="-42.50")

    top = body["categories"][0]
    assert top["category"] == "Meals"
    assert top["source"] == "lookup"
    assert top["evidence"]["agreeing"] == 2


def test_c5_learned_refund_counts_for_its_supplier(seed, predict):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals", amount="42.50")])
    seed([created_event(supplier="Blue Heron Cafe", category="Meals", amount="-42.50")])

    body = predict(supplier="SQ *BLUE HERON CAFE", amount="4.50")

    assert body["categories"][0]["category"] == "Meals"
    assert body["categories"][0]["evidence"]["agreeing"] == 2


# C6: time zones.


@pytest.mark.parametrize("time_zone", SERVER_TIME_ZONES)
@pytest.mark.parametrize("date", OFFSET_DATES)
def test_c6_offset_date_is_business_day_in_storage(seed, time_zone, date):
    with override_settings(TIME_ZONE=time_zone):
        seed([created_event(expense_id="e-tz", date=date)])

        assert stored("e-tz").date == datetime.date(2024, 11, 13)
        assert LookupExpense.objects.get(expense_id="e-tz").date == datetime.date(2024, 11, 13)
        assert ExpenseEvent.objects.get().payload["expense"]["date"] == "2024-11-13"


@pytest.mark.parametrize("time_zone", SERVER_TIME_ZONES)
@pytest.mark.parametrize("date", OFFSET_DATES)
def test_c6_offset_date_is_business_day_in_lookup(seed, predict, time_zone, date):
    with override_settings(TIME_ZONE=time_zone):
        seed([created_event(expense_id="e-tz", supplier="Blue Heron Cafe", category="Meals", date=date)])

        body = predict(supplier="Blue Heron Cafe", date=date)

    [evidence] = body["categories"][0]["evidence"]["expenses"]
    assert evidence == {"expense_id": "e-tz", "date": "2024-11-13"}


@pytest.mark.parametrize("time_zone", SERVER_TIME_ZONES)
@pytest.mark.parametrize("date", OFFSET_DATES)
def test_c6_offset_date_is_business_day_in_prediction_request(time_zone, date):
    # The date that rules, the lookup's recency weight and the model all receive.
    with override_settings(TIME_ZONE=time_zone):
        serializer = PredictionRequestSerializer(data=expense_payload(date=date))

        assert serializer.is_valid(), serializer.errors
        assert serializer.validated_data["date"] == datetime.date(2024, 11, 13)


@pytest.mark.parametrize("time_zone", SERVER_TIME_ZONES)
def test_c6_rules_answer_for_offset_date(predict, time_zone):
    # Rules have no date condition, so the date's zone cannot change which rule matches.
    OverrideRule.objects.create(supplier_value="Blue Heron", category="Meals")

    with override_settings(TIME_ZONE=time_zone):
        body = predict(supplier="Blue Heron Cafe", date="2024-11-13T07:40:00+10:00")

    assert body["categories"][0]["category"] == "Meals"
    assert body["categories"][0]["source"] == "rule"


# C7: day/month order.


@pytest.mark.parametrize("date", REFUSED_DATES)
def test_c7_ambiguous_or_impossible_date_rejected_by_predictions(api_client, date):
    response = api_client.post(PREDICTIONS_URL, expense_payload(date=date), format="json")

    assert response.status_code == 400
    entry = error_fields(response)["date"]
    assert entry["value"] == date


@pytest.mark.parametrize("date", REFUSED_DATES)
def test_c7_ambiguous_or_impossible_date_stores_nothing(api_client, django_capture_on_commit_callbacks, date):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(EVENTS_URL, created_event(expense_id="e-date", date=date), format="json")

    assert response.status_code == 400
    assert error_fields(response)["expense.date"]["value"] == date
    assert stored("e-date") is None


@pytest.mark.parametrize("date", ["05/04/2024", "13/04/2024", "20240405"])
def test_c7_ambiguous_date_message_names_the_format(api_client, date):
    response = api_client.post(PREDICTIONS_URL, expense_payload(date=date), format="json")

    assert error_fields(response)["date"]["message"] == f"Invalid date; expected {DATE_FORMAT_HELP}."


def test_c7_impossible_date_message(api_client):
    response = api_client.post(PREDICTIONS_URL, expense_payload(date="2024-02-30"), format="json")

    assert (
        error_fields(response)["date"]["message"]
        == "Invalid date: no such day in the calendar, time of day or UTC offset."
    )
