"""Unseen and featureless input: the API returns 200, with low model confidence."""

import pytest

from tests.factories import expense_payload

# Suppliers that share no word and few character n-grams with the training data: a bare digit,
# a short brand, another script, emoji and an invented name.
UNSEEN_SUPPLIERS = ["7", "3M", "株式会社テスト", "🍕🍕", "Qzvx Holdings"]
# With five balanced categories a guess is 0.2; a confident majority category would be near 1.
LOW_CONFIDENCE = 0.5


def _unseen_expense(supplier: str) -> dict:
    # XOF (West African CFA franc) is a valid ISO 4217 code the model never saw in training.
    return expense_payload(business_id="b1", supplier=supplier, description="", currency="XOF", amount="12.00")


@pytest.fixture
def active_model(register_model):
    return register_model(activate=True)


@pytest.mark.parametrize("supplier", UNSEEN_SUPPLIERS)
def test_prediction_unseen_supplier_low_confidence(api_client, active_model, supplier):
    response = api_client.post("/api/v1/predictions", _unseen_expense(supplier), format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["degraded"] == []
    assert body["model_version"] == active_model.version
    assert body["categories"], body
    assert {candidate["source"] for candidate in body["categories"]} == {"model"}
    assert body["categories"][0]["confidence"] < LOW_CONFIDENCE, body


def test_prediction_batch_unseen_suppliers(api_client, active_model):
    expenses = [_unseen_expense(supplier) for supplier in UNSEEN_SUPPLIERS]

    response = api_client.post("/api/v1/predictions/batch", {"expenses": expenses}, format="json")

    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert len(predictions) == len(UNSEEN_SUPPLIERS)
    for supplier, prediction in zip(UNSEEN_SUPPLIERS, predictions, strict=True):
        assert prediction["categories"][0]["confidence"] < LOW_CONFIDENCE, (supplier, prediction)


def test_prediction_known_supplier_confident(api_client, active_model):
    # The contrast that makes the low-confidence checks meaningful: a seen supplier scores high.
    expense = expense_payload(business_id="b1", supplier="Trainline 07", description="train ticket", amount="80.00")

    response = api_client.post("/api/v1/predictions", expense, format="json")

    assert response.status_code == 200, response.content
    top = response.json()["categories"][0]
    assert top["category"] == "Travel"
    assert top["confidence"] >= LOW_CONFIDENCE
