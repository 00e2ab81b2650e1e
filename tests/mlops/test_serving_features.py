"""The serving feature path builds the same matrix and probabilities as the fitted pipeline."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlops.features import build_pipeline_features, records_frame
from mlops.inference import classifier_probabilities, predict_records
from mlops.serving_features import ServingFeatures

TRAINING_RECORDS = [
    {"business_id": "b1", "supplier": "SQ *Blue Heron Cafe", "description": "coffee for team", "amount": "4.50",
     "currency": "GBP", "payment_method": "card", "merchant_category": "Eating Places", "department": "Sales"},
    {"business_id": "b1", "supplier": "Northern Rail", "description": "train to Leeds", "amount": "35.00",
     "currency": "GBP", "payment_method": "card", "merchant_category": "Passenger Railways", "department": ""},
    {"business_id": "b2", "supplier": "Adobe Systems", "description": "", "amount": "-19.99",
     "currency": "EUR", "payment_method": "invoice", "merchant_category": "", "department": "IT"},
    {"business_id": "b2", "supplier": "BOOKER WHOLESALE 114", "description": "stock", "amount": "1250",
     "currency": "GBP", "payment_method": "", "merchant_category": "Grocery Stores", "department": "Kitchen"},
]  # fmt: skip
CATEGORIES = ["Meals", "Travel", "Software", "Stock"]
UNSEEN_RECORDS = [
    # Known values, unknown values of every categorical column, empty and missing fields, other scripts.
    TRAINING_RECORDS[0],
    {"business_id": "b9", "supplier": "Ｂｌｕｅ　Ｈｅｒｏｎ", "amount": "0.5", "currency": "usd"},
    {"business_id": "b1", "supplier": "", "description": "", "amount": None, "currency": ""},
    {"business_id": "b2", "supplier": "Café Nero Leeds", "description": "coffee coffee coffee", "amount": "4.5"},
    {"business_id": "b1", "supplier": "Никто", "merchant_category": "Eating Places Restaurants", "amount": "1e3"},
]


def _fitted_pipeline(records, categories, *, min_df=1):
    pipeline = Pipeline(
        [("features", build_pipeline_features(min_df=min_df)), ("classifier", LogisticRegression(max_iter=200))]
    )
    return pipeline.fit(records_frame(records), categories)


@pytest.mark.parametrize("min_df", [1, 2])
def test_matrix_equals_the_column_transformer(min_df):
    pipeline = _fitted_pipeline(TRAINING_RECORDS * 2, CATEGORIES * 2, min_df=min_df)
    serving = ServingFeatures.from_pipeline(pipeline)

    expected = pipeline[0].transform(records_frame(UNSEEN_RECORDS))
    actual = serving.transform(UNSEEN_RECORDS)

    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.toarray(), expected.toarray(), rtol=1e-12, atol=1e-12)


def test_column_without_terms_is_one_zero_column():
    records = [{**record, "description": "", "department": ""} for record in TRAINING_RECORDS]
    pipeline = _fitted_pipeline(records, CATEGORIES)
    assert pipeline[0].named_transformers_["text_words"].no_terms_

    expected = pipeline[0].transform(records_frame(UNSEEN_RECORDS))
    actual = ServingFeatures.from_pipeline(pipeline).transform(UNSEEN_RECORDS)

    np.testing.assert_allclose(actual.toarray(), expected.toarray(), rtol=1e-12, atol=1e-12)


def test_predictions_equal_the_pipeline():
    pipeline = _fitted_pipeline(TRAINING_RECORDS, CATEGORIES)
    bundle = {"pipeline": pipeline, "labels": list(pipeline.classes_), "business_labels": {"b1": [0, 1, 2, 3]}}
    expected = pipeline.predict_proba(records_frame(UNSEEN_RECORDS))

    answers = predict_records(bundle, UNSEEN_RECORDS[:1], top_k=4)

    assert bundle["serving_features"] is not None
    best = {item["category"]: item["confidence"] for item in answers[0]}
    for index, label in enumerate(bundle["labels"]):
        assert best[label] == pytest.approx(expected[0][index], abs=1e-6)


def test_unsupported_pipeline_falls_back():
    pipeline = _fitted_pipeline(TRAINING_RECORDS, CATEGORIES)
    pipeline[0].transformers_[-1] = (
        "categorical",
        OneHotEncoder(handle_unknown="error").fit(records_frame(TRAINING_RECORDS)[["currency"]]),
        ["currency"],
    )

    assert ServingFeatures.from_pipeline(pipeline) is None
    assert ServingFeatures.from_pipeline(pipeline[0]) is None


@pytest.mark.parametrize("categories", [CATEGORIES, ["Meals", "Travel", "Meals", "Travel"]])
def testclassifier_probabilities_equal_predict_proba(categories):
    pipeline = _fitted_pipeline(TRAINING_RECORDS * 2, categories * 2)
    matrix = ServingFeatures.from_pipeline(pipeline).transform(UNSEEN_RECORDS)

    actual = classifier_probabilities(pipeline[-1], matrix)

    np.testing.assert_array_equal(actual, pipeline[-1].predict_proba(matrix))
