"""The serving feature path builds the same matrix as the fitted column transformer."""

import numpy as np
import pytest
from sklearn.preprocessing import OneHotEncoder

from mlops.features import build_pipeline_features, records_frame
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
UNSEEN_RECORDS = [
    # Known values, unknown values of every categorical column, empty and missing fields, other scripts.
    TRAINING_RECORDS[0],
    {"business_id": "b9", "supplier": "Ｂｌｕｅ　Ｈｅｒｏｎ", "amount": "0.5", "currency": "usd"},
    {"business_id": "b1", "supplier": "", "description": "", "amount": None, "currency": ""},
    {"business_id": "b2", "supplier": "Café Nero Leeds", "description": "coffee coffee coffee", "amount": "4.5"},
    {"business_id": "b1", "supplier": "Никто", "merchant_category": "Eating Places Restaurants", "amount": "1e3"},
]


def _fitted_features(records, *, min_df=1):
    return build_pipeline_features(min_df=min_df).fit(records_frame(records))


@pytest.mark.parametrize("min_df", [1, 2])
def test_matrix_equals_the_column_transformer(min_df):
    transformer = _fitted_features(TRAINING_RECORDS * 2, min_df=min_df)
    serving = ServingFeatures.from_transformer(transformer)

    expected = transformer.transform(records_frame(UNSEEN_RECORDS))
    actual = serving.transform(UNSEEN_RECORDS)

    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.toarray(), expected.toarray(), rtol=1e-12, atol=1e-12)


def test_matrix_in_float32():
    transformer = _fitted_features(TRAINING_RECORDS)
    serving = ServingFeatures.from_transformer(transformer)

    actual = serving.transform(UNSEEN_RECORDS, dtype=np.float32)

    assert actual.dtype == np.float32
    expected = transformer.transform(records_frame(UNSEEN_RECORDS)).toarray()
    np.testing.assert_allclose(actual.toarray(), expected, rtol=1e-6)


def test_column_without_terms_is_one_zero_column():
    records = [{**record, "description": "", "department": ""} for record in TRAINING_RECORDS]
    transformer = _fitted_features(records)
    assert transformer.named_transformers_["text_words"].no_terms_

    expected = transformer.transform(records_frame(UNSEEN_RECORDS))
    actual = ServingFeatures.from_transformer(transformer).transform(UNSEEN_RECORDS)

    np.testing.assert_allclose(actual.toarray(), expected.toarray(), rtol=1e-12, atol=1e-12)


def test_unsupported_transformer_falls_back():
    transformer = _fitted_features(TRAINING_RECORDS)
    transformer.transformers_[-1] = (
        "categorical",
        OneHotEncoder(handle_unknown="error").fit(records_frame(TRAINING_RECORDS)[["currency"]]),
        ["currency"],
    )

    assert ServingFeatures.from_transformer(transformer) is None
    assert ServingFeatures.from_transformer(transformer.transformers_[0][1]) is None
