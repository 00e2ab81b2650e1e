"""POST /api/v1/predictions/batch: list bounds, per-item errors and response order."""

import pytest

from lookup.models import OverrideRule
from tests.factories import expense_payload
from tests.support.api import error_fields

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions/batch"


def test_batch_empty(api_client):
    response = api_client.post(URL, {"expenses": []}, format="json")

    assert response.status_code == 400
    assert error_fields(response)["expenses"]["message"] == "This list may not be empty."


def test_batch_1001_items(api_client):
    response = api_client.post(URL, {"expenses": [expense_payload()] * 1001}, format="json")

    assert response.status_code == 400
    entry = error_fields(response)["expenses"]
    assert "1000" in entry["message"]
    assert entry["value"] == "<list of 1001 items>"


def test_batch_1000_items(api_client):
    response = api_client.post(URL, {"expenses": [expense_payload()] * 1000}, format="json")

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000


def test_batch_keeps_request_order(api_client):
    OverrideRule.objects.create(supplier_match="equals", supplier_value="Alpha Rail", category="Travel")
    OverrideRule.objects.create(supplier_match="equals", supplier_value="Beta Bistro", category="Meals")
    OverrideRule.objects.create(supplier_match="equals", supplier_value="Gamma Cloud", category="Software")
    suppliers = ["Beta Bistro", "Gamma Cloud", "Alpha Rail", "Beta Bistro"]

    response = api_client.post(URL, {"expenses": [expense_payload(supplier=name) for name in suppliers]}, format="json")

    categories = [item["categories"][0]["category"] for item in response.json()["predictions"]]
    assert categories == ["Meals", "Software", "Travel", "Meals"]


def test_batch_top_k_per_item(api_client):
    for number in range(5):
        OverrideRule.objects.create(supplier_value="Blue Heron", category=f"Category {number}")
    items = [expense_payload(top_k=1), expense_payload(top_k=3)]

    response = api_client.post(URL, {"expenses": items}, format="json")

    predictions = response.json()["predictions"]
    assert len(predictions[0]["categories"]) == 1
    assert len(predictions[1]["categories"]) <= 3


def test_batch_item_error_path(api_client):
    items = [expense_payload(), expense_payload(), expense_payload(amount="1.234,56")]

    response = api_client.post(URL, {"expenses": items}, format="json")

    assert response.status_code == 400
    entry = error_fields(response)["expenses.2.amount"]
    assert entry["value"] == "1.234,56"


def test_batch_item_errors_all_listed(api_client):
    items = [expense_payload(date="05/04/2024"), expense_payload(), expense_payload(currency="ABC")]

    response = api_client.post(URL, {"expenses": items}, format="json")

    assert set(error_fields(response)) == {"expenses.0.date", "expenses.2.currency"}
    assert response.json()["error"]["message"].endswith("(and 1 more)")


def test_batch_item_unknown_field(api_client):
    response = api_client.post(URL, {"expenses": [expense_payload(colour="red")]}, format="json")

    assert "expenses.0.colour" in error_fields(response)


def test_batch_unknown_top_level_field(api_client):
    response = api_client.post(URL, {"expenses": [expense_payload()], "top_k": 2}, format="json")

    assert response.status_code == 400
    assert "top_k" in error_fields(response)


@pytest.mark.parametrize("expenses", [expense_payload(), "all", None, 3])
def test_batch_expenses_not_list(api_client, expenses):
    response = api_client.post(URL, {"expenses": expenses}, format="json")

    assert response.status_code == 400
    assert "expenses" in error_fields(response)


def test_batch_body_is_list(api_client):
    response = api_client.post(URL, [expense_payload()], format="json")

    assert response.status_code == 400
    assert "body" in error_fields(response)


def test_batch_requires_authentication(client):
    response = client.post(URL, {"expenses": [expense_payload()]}, content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_batch_3mb_body(api_client):
    items = [expense_payload(description="x" * 2000)] * 1600

    response = api_client.post(URL, {"expenses": items}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
