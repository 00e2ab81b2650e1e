"""Business models: their probabilities, their fit, and artefacts of the first model format."""

import pickle

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlops.business_models import (
    BusinessModel,
    fit_business_model,
    fit_business_models,
    restrict_columns,
    shared_labels,
)
from mlops.features import build_pipeline_features, records_frame
from mlops.inference import IncompatibleModelError, predict_records, upgrade_bundle
from mlops.training import DEFAULT_HYPER_PARAMETERS
from tests.mlops.synthetic import synthetic_records

PARAMS = DEFAULT_HYPER_PARAMETERS | {"max_iter": 50}


def _random_matrix(rows=40, columns=30, seed=0):
    return sparse.random(rows, columns, density=0.2, format="csr", random_state=seed, dtype=np.float32)


@pytest.mark.parametrize("columns", [[], [0], [3, 4, 5, 29], list(range(30)), [1, 7, 8, 20, 28]])
def test_restrict_columns_equals_column_indexing(columns):
    matrix = _random_matrix()
    columns = np.array(columns, dtype=np.int32)

    restricted = restrict_columns(matrix, columns)

    assert restricted.shape == (40, len(columns))
    np.testing.assert_array_equal(restricted.toarray(), matrix.toarray()[:, columns])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("classes", [2, 4])
def test_business_model_equals_predict_proba(classes):
    matrix = _random_matrix()
    labels = np.arange(40) % classes + 10  # label indexes need not start at 0
    model = fit_business_model(matrix, labels, params=PARAMS)
    reference = LogisticRegression(C=PARAMS["C"], solver="saga", max_iter=PARAMS["max_iter"], tol=PARAMS["tol"])
    reference.set_params(random_state=PARAMS["random_state"])
    reference.fit(restrict_columns(matrix, model.columns), labels)

    unseen = _random_matrix(rows=8, seed=1)
    actual = model.probabilities(unseen)

    np.testing.assert_array_equal(model.labels, np.arange(10, 10 + classes))
    assert model.weights.dtype == np.float32
    expected = reference.predict_proba(restrict_columns(unseen, model.columns))
    np.testing.assert_allclose(actual, expected, atol=1e-6)
    for row in range(unseen.shape[0]):
        np.testing.assert_array_equal(model.probabilities(unseen[row]), actual[row : row + 1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_row_without_known_columns_gets_the_intercepts_softmax():
    matrix = _random_matrix()
    model = fit_business_model(matrix[:, :20], np.arange(40) % 3, params=PARAMS)
    unknown = sparse.csr_matrix(([0.5, 0.7], ([0, 0], [25, 28])), shape=(1, 30), dtype=np.float32)

    actual = model.probabilities(unknown)

    expected = np.exp(model.intercept.astype(np.float64))
    np.testing.assert_allclose(actual[0], expected / expected.sum(), rtol=1e-6)


def test_model_reads_only_used_columns():
    matrix = sparse.csr_matrix(np.array([[1.0, 0, 0, 0.5], [0, 0, 0, 1.0], [1.0, 0, 0, 0]], dtype=np.float32))

    model = fit_business_model(matrix, np.array([0, 1, 0]), params=PARAMS)

    np.testing.assert_array_equal(model.columns, [0, 3])
    assert model.weights.shape == (2, 2)


def test_single_label_business_is_certain():
    model = fit_business_model(_random_matrix(rows=5), np.array([3] * 5), params=PARAMS)

    np.testing.assert_array_equal(model.probabilities(_random_matrix(rows=3)), np.ones((3, 1)))


def test_shared_model_learns_only_labels_of_three_businesses():
    matrix = _random_matrix(rows=60)
    labels = np.array([0, 1] * 30)
    labels[[0, 3, 6, 9]] = 2  # label 2 belongs to business a alone
    businesses = ["a", "b", "c"] * 20

    models, shared = fit_business_models(matrix, labels, businesses, params=PARAMS, threads=1)

    assert set(models) == {"a", "b", "c"}
    np.testing.assert_array_equal(shared.labels, [0, 1])
    np.testing.assert_array_equal(models["a"].labels, [0, 1, 2])
    assert shared_labels({business: model.labels for business, model in models.items()}) == [0, 1]


def test_no_shared_model_below_three_businesses():
    _, shared = fit_business_models(
        _random_matrix(rows=20), np.arange(20) % 2, ["a", "b"] * 10, params=PARAMS, threads=1
    )

    assert shared is None


def test_threads_fit_the_same_models():
    matrix = _random_matrix(rows=90)
    labels = np.arange(90) % 3
    businesses = [f"b{row % 5}" for row in range(90)]

    serial, shared_serial = fit_business_models(matrix, labels, businesses, params=PARAMS, threads=1)
    parallel, shared_parallel = fit_business_models(matrix, labels, businesses, params=PARAMS, threads=2)

    for business, model in serial.items():
        np.testing.assert_array_equal(model.weights, parallel[business].weights)
    np.testing.assert_array_equal(shared_serial.weights, shared_parallel.weights)


def test_batch_equals_one_record_at_a_time(tiny_training_result):
    bundle = tiny_training_result.bundle
    records = [record for record, _, _ in synthetic_records(12, businesses=("b1", "b2", "unseen"), seed=5)]

    batch = predict_records(bundle, records, top_k=3)

    assert batch == [predict_records(bundle, [record], top_k=3)[0] for record in records]


def _first_format_bundle(records, categories, business_labels):
    pipeline = Pipeline(
        [("features", build_pipeline_features(min_df=1)), ("classifier", LogisticRegression(max_iter=300))]
    )
    pipeline.fit(records_frame(records), categories)
    return {"pipeline": pipeline, "labels": list(pipeline.classes_), "business_labels": business_labels}


def _masked_ranking(bundle, record, labels_of_business, top_k):
    """The first format's serving: every label's probability, masked to the business's labels, renormalised."""
    probabilities = bundle["pipeline"].predict_proba(records_frame([record]))[0]
    masked = np.zeros_like(probabilities)
    masked[labels_of_business] = probabilities[labels_of_business]
    masked /= masked.sum()
    order = np.argsort(-masked, kind="stable")[:top_k]
    return [(bundle["labels"][index], masked[index]) for index in order if masked[index] > 0]


def test_first_format_artefact_serves_the_same_probabilities():
    triples = synthetic_records(120, businesses=("b1", "b2", "b3"), seed=3)
    records = [record for record, _, _ in triples]
    categories = [category for _, category, _ in triples]
    # b3 uses four of the five categories; "Fuel" is used by b1 and b2 only, so it is not shared.
    business_labels = {"b1": [0, 1, 2, 3, 4], "b2": [0, 1, 2, 3, 4], "b3": [0, 2, 3, 4]}
    bundle = _first_format_bundle(records, categories, business_labels)
    fuel = bundle["labels"].index("Fuel")
    business_labels["b3"] = [label for label in business_labels["b3"] if label != fuel]
    shared = shared_labels(business_labels)
    upgraded = upgrade_bundle(dict(bundle))
    unseen = [
        {**records[0], "business_id": "b3"},
        {**records[1], "business_id": "new-business"},
        records[2],
    ]

    answers = predict_records(upgraded, unseen, top_k=5)

    for record, answer in zip(unseen, answers, strict=True):
        expected = _masked_ranking(bundle, record, business_labels.get(record["business_id"], shared), top_k=5)
        assert [item["category"] for item in answer] == [label for label, _ in expected]
        for item, (_, probability) in zip(answer, expected, strict=True):
            assert item["confidence"] == pytest.approx(probability, abs=2e-6)


def test_first_format_with_another_classifier_is_incompatible():
    bundle = {"pipeline": [None, BusinessModel], "labels": [], "business_labels": {}}

    with pytest.raises(IncompatibleModelError, match="retrain it"):
        upgrade_bundle(bundle)


def test_model_pickled_with_coef_loads_as_weights():
    model = fit_business_model(_random_matrix(), np.arange(40) % 3, params=PARAMS)
    older = object.__new__(BusinessModel)
    older.__dict__.update({name: value for name, value in vars(model).items() if name != "weights"})
    older.__dict__["coef"] = np.ascontiguousarray(model.weights.T)

    loaded = pickle.loads(pickle.dumps(older))

    assert "coef" not in vars(loaded)
    assert loaded.weights.flags.c_contiguous
    np.testing.assert_array_equal(loaded.weights, model.weights)
    unseen = _random_matrix(rows=5, seed=2)
    np.testing.assert_array_equal(loaded.probabilities(unseen), model.probabilities(unseen))
