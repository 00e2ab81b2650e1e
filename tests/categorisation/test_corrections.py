"""A category a person corrects is what the next prediction for that supplier suggests."""

import pytest

from tests.categorisation.conftest import TRAINING_BUSINESS
from tests.factories import created_event, expense_payload, updated_event

URL = "/api/v1/predictions"
SUPPLIER = "Harbour Bakery"


def predict(api_client, **overrides):
    payload = expense_payload(business_id=TRAINING_BUSINESS, supplier=SUPPLIER, description="", **overrides)
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def file_and_correct(seed_events, *, expense_id="x-1", date="2024-06-01"):
    """File an expense of the supplier as Meals, then correct it to Travel (version 2)."""
    expense = {"business_id": TRAINING_BUSINESS, "expense_id": expense_id, "supplier": SUPPLIER, "date": date}
    seed_events([created_event(category="Meals", **expense)])
    seed_events([updated_event(version=2, category="Travel", **expense)])


@pytest.mark.django_db
def test_next_prediction_follows_a_corrected_category(api_client, active_model, seed_events):
    # The model learnt Harbour Bakery as Meals; the business files one and a person corrects it.
    before = predict(api_client, date="2024-06-01")
    file_and_correct(seed_events)

    after = predict(api_client, date="2024-06-02")

    assert before["categories"][0]["category"] == "Meals"
    assert after["categories"][0]["category"] == "Travel"
    assert after["categories"][0]["source"] == "lookup"
    assert after["categories"][0]["evidence"]["corrected"] is True


@pytest.mark.django_db
def test_correction_ends_on_newer_category(api_client, active_model, seed_events):
    file_and_correct(seed_events)
    seed_events(
        [
            created_event(
                business_id=TRAINING_BUSINESS, expense_id="x-2", supplier=SUPPLIER, category="Meals", date="2024-06-05"
            )
        ]
    )

    after = predict(api_client, date="2024-06-06")

    assert after["categories"][0]["category"] == "Meals"
