"""POST /api/v1/predictions: validation of every field and the response shape."""

import json

import pytest

from lookup.models import OverrideRule
from tests.factories import expense_payload
from tests.support.api import error_fields

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions"


def post_raw(client, body: str):
    return client.post(URL, data=body, content_type="application/json")


def raw_expense(amount_json: str) -> str:
    """A request body whose amount is written as the given JSON text, untouched by any encoder."""
    fields = json.dumps(expense_payload(amount="__AMOUNT__"))
    return fields.replace('"__AMOUNT__"', amount_json)


@pytest.mark.parametrize("amount", ["4.50", "-42.55", "0", " 12.00 ", "123456789012.123456789012345", 7])
def test_prediction_amount_accepted(api_client, amount):
    response = api_client.post(URL, expense_payload(amount=amount), format="json")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("amount_json", ["30.4", "0.1", "19.999999999999998", "1.5e1", "-0.25"])
def test_prediction_amount_json_number_accepted(api_client, amount_json):
    response = post_raw(api_client, raw_expense(amount_json))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "amount",
    [
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "1,234.56",
        "1.234,56",
        "3,2",
        "(42.50)",
        "$-42.55",
        "--5",
        "+5",
        "1.",
        ".5",
        "",
        "   ",
        "1234567890123",
        "0.1234567890123456",
        True,
        False,
        None,
        {"value": "1.00"},
        ["1.00"],
    ],
)
def test_prediction_amount_rejected(api_client, amount):
    response = api_client.post(URL, expense_payload(amount=amount), format="json")

    assert response.status_code == 400
    assert "amount" in error_fields(response)


@pytest.mark.parametrize("amount_json", ["1e400", "1e13", "1e20", "1E+12", "1e-16", "12345678901234567890"])
def test_prediction_amount_json_number_out_of_range(api_client, amount_json):
    response = post_raw(api_client, raw_expense(amount_json))

    assert response.status_code == 400
    assert "amount" in error_fields(response)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_prediction_amount_json_constant_rejected(api_client, literal):
    response = post_raw(api_client, raw_expense(literal))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert "finite numbers only" in response.json()["error"]["message"]


def test_prediction_amount_error_names_value_and_format(api_client):
    response = api_client.post(URL, expense_payload(amount="3,2"), format="json")

    entry = error_fields(response)["amount"]
    assert entry["value"] == "3,2"
    assert "'.' as the decimal separator" in entry["message"]
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("date", ["2024-11-13", "2024-11-13T07:40:00+10:00", "2024-11-13T07:40:00Z", "2024-02-29"])
def test_prediction_date_accepted(api_client, date):
    response = api_client.post(URL, expense_payload(date=date), format="json")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "date",
    [
        "05/04/2024",
        "13/04/2024",
        "04-05-2024",
        "20240405",
        "2024-02-30",
        "2023-02-29",
        "2024-13-01",
        "2024-11-13T25:00:00",
        "yesterday",
        "",
        20240405,
        None,
        ["2024-11-13"],
    ],
)
def test_prediction_date_rejected(api_client, date):
    response = api_client.post(URL, expense_payload(date=date), format="json")

    assert response.status_code == 400
    assert "date" in error_fields(response)


def test_prediction_impossible_date_message(api_client):
    response = api_client.post(URL, expense_payload(date="2024-02-30"), format="json")

    assert error_fields(response)["date"]["message"] == (
        "Invalid date: no such day in the calendar, time of day or UTC offset."
    )


@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-02", "1899-12-31", "2200-01-01T00:00:00Z"])
def test_prediction_date_out_of_range(api_client, date):
    response = api_client.post(URL, expense_payload(date=date), format="json")

    assert response.status_code == 400
    assert error_fields(response)["date"]["message"] == "Invalid date: expected a date from 1900-01-01 to 2199-12-31."


@pytest.mark.parametrize("date", ["٢٠٢٤-١١-١٣", "2024-11-13T0٧:40:00Z"])
def test_prediction_date_other_script_digits_rejected(api_client, date):
    response = api_client.post(URL, expense_payload(date=date), format="json")

    assert response.status_code == 400
    assert "YYYY-MM-DD" in error_fields(response)["date"]["message"]


@pytest.mark.parametrize("amount", ["١٢٣", "12.٥٠"])
def test_prediction_amount_other_script_digits_rejected(api_client, amount):
    response = api_client.post(URL, expense_payload(amount=amount), format="json")

    assert response.status_code == 400
    assert "'.' as the decimal separator" in error_fields(response)["amount"]["message"]


def test_prediction_amount_5000_digits_rejected(api_client):
    body = json.dumps(expense_payload()).replace('"4.50"', "9" * 5000)

    response = api_client.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert "at most 12 digits before the point" in error_fields(response)["amount"]["message"]


def test_prediction_ambiguous_date_message_names_format(api_client):
    response = api_client.post(URL, expense_payload(date="05/04/2024"), format="json")

    assert "YYYY-MM-DD" in error_fields(response)["date"]["message"]


@pytest.mark.parametrize("currency", ["GBP", "eur", " USD "])
def test_prediction_currency_accepted(api_client, currency):
    response = api_client.post(URL, expense_payload(currency=currency), format="json")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("currency", ["ABC", "POUNDS", "£", "", 826, None])
def test_prediction_currency_rejected(api_client, currency):
    response = api_client.post(URL, expense_payload(currency=currency), format="json")

    assert response.status_code == 400
    assert "currency" in error_fields(response)


def test_prediction_unknown_currency_message(api_client):
    response = api_client.post(URL, expense_payload(currency="ABC"), format="json")

    entry = error_fields(response)["currency"]
    assert entry["value"] == "ABC"
    assert "ISO 4217" in entry["message"]


@pytest.mark.parametrize("supplier", ["", "   ", "\t\n", None, 42, ["Cafe"], {"name": "Cafe"}])
def test_prediction_supplier_blank_or_wrong_type(api_client, supplier):
    response = api_client.post(URL, expense_payload(supplier=supplier), format="json")

    assert response.status_code == 400
    assert "supplier" in error_fields(response)


@pytest.mark.parametrize(
    "supplier", ["Cafe\x00", "Cafe\x07Bar", "Cafe\x1b[31m", "Ca\u0085fe", "Line\nbreak", "Vertical\x0btab"]
)
def test_prediction_supplier_control_character(api_client, supplier):
    response = api_client.post(URL, expense_payload(supplier=supplier), format="json")

    assert response.status_code == 400
    assert "supplier" in error_fields(response)


def test_prediction_description_allows_newline(api_client):
    response = api_client.post(URL, expense_payload(description="Line one\nLine two\ttabbed"), format="json")

    assert response.status_code == 200, response.content


def test_prediction_description_control_character(api_client):
    response = api_client.post(URL, expense_payload(description="Ink \x1b cartridge"), format="json")

    assert response.status_code == 400
    assert "U+001B" in error_fields(response)["description"]["message"]


def test_prediction_supplier_50kb(api_client):
    supplier = "A" * 50_000

    response = api_client.post(URL, expense_payload(supplier=supplier), format="json")

    assert response.status_code == 400
    entry = error_fields(response)["supplier"]
    assert "300" in entry["message"]
    assert len(entry["value"]) < 200


def test_prediction_supplier_at_max_length(api_client):
    response = api_client.post(URL, expense_payload(supplier="A" * 300), format="json")

    assert response.status_code == 200, response.content


def test_prediction_description_too_long(api_client):
    response = api_client.post(URL, expense_payload(description="x" * 2001), format="json")

    assert response.status_code == 400
    assert "description" in error_fields(response)


@pytest.mark.parametrize(
    "field, value",
    [
        ("business_id", 42),
        ("business_id", ""),
        ("business_id", "b 1"),
        ("business_id", "-b1"),
        ("business_id", "b" * 101),
        ("expense_id", ["e1"]),
        ("description", 12),
        ("vat_amount", "1,00"),
        ("payment_method", {"card": True}),
        ("merchant_category", "m" * 201),
        ("department", False),
    ],
)
def test_prediction_field_wrong_type_or_format(api_client, field, value):
    response = api_client.post(URL, expense_payload(**{field: value}), format="json")

    assert response.status_code == 400
    assert field in error_fields(response)


@pytest.mark.parametrize("missing", ["business_id", "supplier", "amount", "currency", "date"])
def test_prediction_required_field_missing(api_client, missing):
    payload = expense_payload()
    del payload[missing]

    response = api_client.post(URL, payload, format="json")

    assert response.status_code == 400
    assert error_fields(response)[missing]["message"] == "This field is required."


def test_prediction_unknown_field(api_client):
    response = api_client.post(URL, expense_payload(colour="red"), format="json")

    assert response.status_code == 400
    entry = error_fields(response)["colour"]
    assert entry["value"] == "red"
    assert "Accepted fields:" in entry["message"]


def test_prediction_unknown_field_with_huge_array(api_client):
    response = api_client.post(URL, expense_payload(extra=list(range(100_000))), format="json")

    assert response.status_code == 400
    assert error_fields(response)["extra"]["value"] == "<list of 100000 items>"


@pytest.mark.parametrize("body", [[], [expense_payload()], "expense", 42])
def test_prediction_body_not_object(api_client, body):
    response = api_client.post(URL, body, format="json")

    assert response.status_code == 400
    assert "body" in error_fields(response)


@pytest.mark.parametrize("top_k", [1, 20])
def test_prediction_top_k_bounds_accepted(api_client, top_k):
    for number in range(25):
        OverrideRule.objects.create(supplier_value="Blue Heron", category=f"Category {number}")

    response = api_client.post(URL, expense_payload(top_k=top_k), format="json")

    assert response.status_code == 200
    assert len(response.json()["categories"]) <= top_k


@pytest.mark.parametrize("top_k", [0, -1, 21, 10**40, "many", 1.5, True, None])
def test_prediction_top_k_rejected(api_client, top_k):
    response = api_client.post(URL, expense_payload(top_k=top_k), format="json")

    assert response.status_code == 400
    assert "top_k" in error_fields(response)


def test_prediction_response_shape(api_client):
    rule = OverrideRule.objects.create(supplier_value="Blue Heron", category="Meals")

    response = api_client.post(URL, expense_payload(), format="json")

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"prediction_id", "categories", "model_version", "degraded", "tier"}
    assert body["categories"] == [
        {"category": "Meals", "confidence": 1.0, "source": "rule", "evidence": {"rule_id": rule.pk}}
    ]
    assert body["tier"] == "auto_apply"


def test_prediction_requires_authentication(client):
    response = client.post(URL, expense_payload(), content_type="application/json")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_prediction_invalid_token(client, db):
    response = client.post(
        URL, expense_payload(), content_type="application/json", HTTP_AUTHORIZATION="Token not-a-real-token"
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_prediction_3mb_body(api_client):
    payload = expense_payload(description="x" * (3 * 1024 * 1024))

    response = api_client.post(URL, payload, format="json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "payload_too_large"


def test_prediction_get_not_allowed(api_client):
    response = api_client.get(URL)

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
