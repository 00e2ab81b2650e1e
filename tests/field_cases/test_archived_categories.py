"""Field case C14: a category the business has archived is never suggested, through the public API."""

import pytest

from categorisation import calibration
from lookup.models import OverrideRule
from tests.factories import created_event
from tests.field_cases.conftest import BACKGROUND_BUSINESS

pytestmark = pytest.mark.django_db

ARCHIVE_URL = "/api/v1/archived-categories"
RESTORE_URL = "/api/v1/archived-categories/restore"


@pytest.fixture
def archive(api_client):
    def post(business_id: str, category: str) -> None:
        response = api_client.post(ARCHIVE_URL, {"business_id": business_id, "category": category}, format="json")
        assert response.status_code in (200, 201), response.content

    return post


def suggested(body: dict) -> list[str]:
    return [candidate["category"] for candidate in body["categories"]]


def test_c14_archived_category_never_suggested(seed, predict, train_active_model, archive):
    # B1's lookup, the model (trained on the background business's Meals) and a rule all point at Meals.
    train_active_model([created_event(supplier="Harbour Bakery", category="Meals") for _ in range(3)])
    OverrideRule.objects.create(business_id="b1", supplier_value="harbour bakery", category="Meals")
    assert suggested(predict(supplier="Harbour Bakery", description="team lunch"))[0] == "Meals"

    archive("b1", "Meals")
    body = predict(supplier="Harbour Bakery", description="team lunch")

    assert "Meals" not in suggested(body), body
    assert body["degraded"] == []
    assert body["model_version"] is not None


def test_c14_archived_rule_category_next_source_answers(seed, predict, archive):
    seed([created_event(supplier="Blue Heron Cafe", category="Staff welfare") for _ in range(3)])
    OverrideRule.objects.create(business_id="", supplier_value="heron", category="Meals")

    archive("b1", "Meals")
    body = predict(supplier="Blue Heron Cafe")

    assert suggested(body) == ["Staff welfare"], body
    assert body["categories"][0]["source"] == "lookup"


def test_c14_every_candidate_archived_abstains(seed, predict, archive):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals") for _ in range(3)])

    archive("b1", "Meals")
    body = predict(supplier="Blue Heron Cafe")

    assert body["categories"] == []
    assert body["tier"] == calibration.ABSTAIN


def test_c14_archive_in_other_business_isolated(seed, predict, archive):
    seed(
        [
            created_event(business_id=business_id, supplier="Blue Heron Cafe", category="Meals")
            for business_id in ("b1", "b2")
        ]
    )

    archive("b2", "Meals")

    assert suggested(predict(business_id="b1", supplier="Blue Heron Cafe")) == ["Meals"]
    assert suggested(predict(business_id="b2", supplier="Blue Heron Cafe")) == []


def test_c14_restored_category_suggested_again(seed, predict, archive, api_client):
    seed([created_event(supplier="Blue Heron Cafe", category="Meals") for _ in range(2)])
    archive("b1", "Meals")
    assert suggested(predict(supplier="Blue Heron Cafe")) == []

    response = api_client.post(RESTORE_URL, {"business_id": "b1", "category": "Meals"}, format="json")

    assert response.json()["restored"] is True
    assert suggested(predict(supplier="Blue Heron Cafe")) == ["Meals"]


def test_c14_archived_model_category_dropped_in_batch(api_client, train_active_model, archive):
    train_active_model()
    archive("b1", "Travel")
    expenses = [
        {
            "business_id": business_id,
            "supplier": "Northern Rail",
            "description": "train ticket",
            "amount": "30.00",
            "currency": "GBP",
            "date": "2024-11-13",
        }
        for business_id in ("b1", BACKGROUND_BUSINESS)
    ]

    response = api_client.post("/api/v1/predictions/batch", {"expenses": expenses}, format="json")

    assert response.status_code == 200, response.content
    archived_business, other_business = response.json()["predictions"]
    assert "Travel" not in suggested(archived_business), archived_business
    assert suggested(other_business)[0] == "Travel", other_business
