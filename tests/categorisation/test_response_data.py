"""The prediction API's fast paths give what DRF's serializers give.

The views validate with one serializer instance per thread (validated_data) and build responses
directly (prediction_data); PredictionRequestSerializer and PredictionSerializer stay the
definition of both, so these tests compare the two ways on the same input.
"""

import pytest
from rest_framework import serializers

from categorisation import policy
from categorisation.serializers import (
    PredictionBatchRequestSerializer,
    PredictionRequestSerializer,
    PredictionSerializer,
    prediction_data,
)
from categorisation.services import Prediction
from lookup.serializer_fields import validated_data
from tests.factories import expense_payload


def _prediction(**overrides) -> Prediction:
    fields = {
        "prediction_id": "3f1c2a9e-8d47-4b0e-9a51-6c2d7e8f9a10",
        "categories": [
            policy.rule_candidate(rule_id=7, category="Travel"),
            policy.Candidate(
                category="Meals",
                confidence=0.75,
                source="lookup",
                evidence={"matches": 3, "agreeing": 2, "expenses": [{"expense_id": "e1", "date": "2024-05-01"}]},
            ),
            policy.Candidate(category="Fuel", confidence=0.125, source="model", evidence={"model_version": "v1"}),
        ],
        "model_version": "v1",
        "degraded": ["lookup"],
        "tier": "suggest",
    }
    return Prediction(**(fields | overrides))


@pytest.mark.parametrize(
    "prediction",
    [
        _prediction(),
        _prediction(categories=[], model_version=None, degraded=[], tier="abstain"),
        _prediction(categories=[policy.Candidate(category="Meals", confidence=1, source="rule")], tier="auto_apply"),
    ],
)
def test_prediction_data_matches_serializer(prediction):
    assert prediction_data(prediction) == PredictionSerializer(prediction).data
    assert list(prediction_data(prediction)) == list(PredictionSerializer(prediction).data)


@pytest.mark.parametrize(
    "data",
    [
        expense_payload(),
        expense_payload(amount=" 12.50 ", currency="eur", date="2024-11-13T07:40:00+10:00", top_k=2),
        expense_payload(description="two\nlines", department="Parks"),
    ],
)
def test_validated_data_equals_is_valid(data):
    serializer = PredictionRequestSerializer(data=data)
    assert serializer.is_valid(), serializer.errors

    assert validated_data(PredictionRequestSerializer, data) == serializer.validated_data


@pytest.mark.parametrize(
    ("serializer_class", "data"),
    [
        (PredictionRequestSerializer, expense_payload(amount="1,234.56")),
        (PredictionRequestSerializer, expense_payload(currency="XXY", colour="red")),
        (PredictionRequestSerializer, ["not", "an", "object"]),
        (PredictionBatchRequestSerializer, {"expenses": [expense_payload(), expense_payload(date="05/04/2024")]}),
        (PredictionBatchRequestSerializer, {"expenses": []}),
        (PredictionRequestSerializer, None),
        (PredictionBatchRequestSerializer, None),
    ],
)
def test_validated_data_errors_match_is_valid(serializer_class, data):
    serializer = serializer_class(data=data)
    assert not serializer.is_valid()

    with pytest.raises(serializers.ValidationError) as raised:
        validated_data(serializer_class, data)

    assert raised.value.detail == serializer.errors


def test_validated_data_after_a_rejected_request():
    with pytest.raises(serializers.ValidationError):
        validated_data(PredictionRequestSerializer, expense_payload(amount="abc", supplier=""))

    valid = expense_payload(supplier="Costa Coffee")
    assert validated_data(PredictionRequestSerializer, valid)["supplier"] == "Costa Coffee"


def test_null_body_error_over_http(api_client):
    response = api_client.post("/api/v1/predictions", "null", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["message"] == "No data provided"
